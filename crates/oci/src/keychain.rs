//! Registry credentials in the macOS Keychain: what the file store is on Linux, as Apple's
//! `container` keeps them. One generic-password item per registry, service
//! [`KEYCHAIN_SERVICE`], account the normalised registry host, its data the JSON of a
//! [`Credential`] (so the username travels with the secret and `list` needs no second item).

use security_framework::base::Error as KeychainError;
use security_framework::item::{ItemClass, ItemSearchOptions, Limit};
use security_framework::passwords::{
    delete_generic_password, get_generic_password, set_generic_password,
};

use crate::credentials::{Credential, CredentialError, CredentialStore, normalise_registry};

/// The Keychain service of our items: the project's reverse-DNS identifier, apart from
/// Apple's `com.apple.container.registry`.
pub const KEYCHAIN_SERVICE: &str = "dev.container.registry";

/// `errSecItemNotFound`: no such item, an answer rather than a failure.
const ITEM_NOT_FOUND: i32 = -25300;

/// The user's login Keychain.
#[derive(Debug, Default)]
pub struct KeychainCredentialStore {
    _private: (),
}

impl KeychainCredentialStore {
    /// The store; nothing is read until it is asked.
    pub fn new() -> KeychainCredentialStore {
        KeychainCredentialStore { _private: () }
    }
}

fn failed(op: &str, registry: &str, e: KeychainError) -> CredentialError {
    CredentialError::Keychain {
        op: format!("{op} {registry}"),
        detail: e
            .message()
            .unwrap_or_else(|| format!("status {}", e.code()))
            .to_lowercase(),
    }
}

impl CredentialStore for KeychainCredentialStore {
    fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        let registry = normalise_registry(registry);
        match get_generic_password(KEYCHAIN_SERVICE, &registry) {
            Ok(data) => {
                serde_json::from_slice(&data)
                    .map(Some)
                    .map_err(|_| CredentialError::Keychain {
                        op: format!("reading {registry}"),
                        detail: format!("the item of service {KEYCHAIN_SERVICE} is not ours"),
                    })
            }
            Err(e) if e.code() == ITEM_NOT_FOUND => Ok(None),
            Err(e) => Err(failed("reading", &registry, e)),
        }
    }

    fn store(&self, registry: &str, credential: &Credential) -> Result<(), CredentialError> {
        let registry = normalise_registry(registry);
        // Serialising two strings cannot fail.
        let data = serde_json::to_vec(credential).unwrap_or_default();
        set_generic_password(KEYCHAIN_SERVICE, &registry, &data)
            .map_err(|e| failed("storing", &registry, e))
    }

    fn erase(&self, registry: &str) -> Result<bool, CredentialError> {
        let registry = normalise_registry(registry);
        match delete_generic_password(KEYCHAIN_SERVICE, &registry) {
            Ok(()) => Ok(true),
            Err(e) if e.code() == ITEM_NOT_FOUND => Ok(false),
            Err(e) => Err(failed("erasing", &registry, e)),
        }
    }

    fn list(&self) -> Result<Vec<(String, String)>, CredentialError> {
        let found = ItemSearchOptions::new()
            .class(ItemClass::generic_password())
            .service(KEYCHAIN_SERVICE)
            .load_attributes(true)
            .limit(Limit::All)
            .search();
        let items = match found {
            Ok(items) => items,
            Err(e) if e.code() == ITEM_NOT_FOUND => return Ok(Vec::new()),
            Err(e) => return Err(failed("listing", KEYCHAIN_SERVICE, e)),
        };
        let mut out = Vec::new();
        for item in items {
            let Some(registry) = item.simplify_dict().and_then(|mut d| d.remove("acct")) else {
                continue;
            };
            if let Some(credential) = self.get(&registry)? {
                out.push((registry, credential.username));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}
