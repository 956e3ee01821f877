//! Registry credentials: the [`CredentialStore`] trait, our own credential file for
//! `registry login/logout/list`, and a read-only view of Docker's `~/.docker/config.json`
//! (`auths`, `credHelpers`, `credsStore`) so users logged in with Docker are logged in here.
//!
//! On macOS the Keychain implements the same trait (`crate::keychain`) where Linux uses the
//! file; [`CredentialChain`] puts it (or the file store) in front of Docker's config.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, atomic_write};

/// How long a `docker-credential-*` helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(15);
/// The key Docker uses for Docker Hub in config.json and with helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Why credentials could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read credentials file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write credentials file")]
    Write(#[source] StoreError),
    #[error("credentials for {registry} in {path} are not valid base64 user:password")]
    BadAuth { registry: String, path: PathBuf },
    #[error("credential helper docker-credential-{helper} failed: {detail}")]
    Helper { helper: String, detail: String },
    #[error("{0} is read-only; log in with `container registry login` instead")]
    ReadOnly(String),
    /// The macOS Keychain refused (macOS only).
    #[error("keychain: {op} failed: {detail}")]
    Keychain { op: String, detail: String },
}

impl CredentialError {
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            CredentialError::Helper { .. } => K::Unavailable,
            CredentialError::ReadOnly(_) => K::FailedPrecondition,
            CredentialError::Parse { .. } | CredentialError::BadAuth { .. } => {
                K::FailedPrecondition
            }
            CredentialError::Read { .. } | CredentialError::Write(_) => K::Internal,
            CredentialError::Keychain { .. } => K::Unavailable,
        }
    }
}

type Result<T, E = CredentialError> = std::result::Result<T, E>;

/// A username and secret (password or token) for one registry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Where registry credentials live. Keys are registry hosts as in image references
/// (`docker.io`, `127.0.0.1:5000`); implementations normalise other spellings.
pub trait CredentialStore: Send + Sync {
    fn get(&self, registry: &str) -> Result<Option<Credential>>;
    fn store(&self, registry: &str, credential: &Credential) -> Result<()>;
    /// Returns whether there was anything to erase.
    fn erase(&self, registry: &str) -> Result<bool>;
    /// `(registry, username)` pairs, sorted by registry.
    fn list(&self) -> Result<Vec<(String, String)>>;
}

/// Normalises a registry spelling: drops a scheme and path, and maps every Docker Hub
/// alias to `docker.io`.
pub fn normalise_registry(registry: &str) -> String {
    let r = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let host = r.split('/').next().unwrap_or(r);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        h => h.to_owned(),
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    version: u32,
    registries: BTreeMap<String, Credential>,
}

/// Our own credential file: JSON, mode 0600, replaced atomically on every change.
#[derive(Debug)]
pub struct FileCredentialStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileCredentialStore {
    pub fn new(path: impl Into<PathBuf>) -> FileCredentialStore {
        FileCredentialStore {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> Result<CredentialFile> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| CredentialError::Parse {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialFile {
                version: 1,
                registries: BTreeMap::new(),
            }),
            Err(source) => Err(CredentialError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn write(&self, file: &CredentialFile) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| {
                CredentialError::Write(StoreError::Io {
                    path: dir.to_owned(),
                    source,
                })
            })?;
        }
        // Serialising strings cannot fail. atomic_write creates the temp file 0600, so the
        // secret is never readable by others, even briefly.
        let json = serde_json::to_vec_pretty(file).unwrap_or_default();
        atomic_write(&self.path, &json).map_err(CredentialError::Write)
    }
}

impl CredentialStore for FileCredentialStore {
    fn get(&self, registry: &str) -> Result<Option<Credential>> {
        Ok(self
            .read()?
            .registries
            .remove(&normalise_registry(registry)))
    }

    fn store(&self, registry: &str, credential: &Credential) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = self.read()?;
        f.version = 1;
        f.registries
            .insert(normalise_registry(registry), credential.clone());
        self.write(&f)
    }

    fn erase(&self, registry: &str) -> Result<bool> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = self.read()?;
        let had = f.registries.remove(&normalise_registry(registry)).is_some();
        if had {
            self.write(&f)?;
        }
        Ok(had)
    }

    fn list(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .read()?
            .registries
            .into_iter()
            .map(|(r, c)| (r, c.username))
            .collect())
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// Docker's `config.json`, read-only.
#[derive(Debug, Clone)]
pub struct DockerConfigStore {
    path: PathBuf,
    helper_dir: Option<PathBuf>,
}

impl DockerConfigStore {
    /// Reads `config.json` at `path`. Helpers are looked up on `PATH`.
    pub fn new(path: impl Into<PathBuf>) -> DockerConfigStore {
        DockerConfigStore {
            path: path.into(),
            helper_dir: None,
        }
    }

    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn from_env() -> Option<DockerConfigStore> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
        Some(DockerConfigStore::new(dir.join("config.json")))
    }

    /// Runs `docker-credential-*` helpers from `dir` instead of `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> DockerConfigStore {
        self.helper_dir = Some(dir.into());
        self
    }

    fn config(&self) -> Result<DockerConfig> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| CredentialError::Parse {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
            Err(source) => Err(CredentialError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn helper(&self, name: &str, server: &str) -> Result<Option<Credential>> {
        let program = format!("docker-credential-{name}");
        let program = match &self.helper_dir {
            Some(d) => d.join(program),
            None => PathBuf::from(program),
        };
        let fail = |detail: String| CredentialError::Helper {
            helper: name.to_owned(),
            detail,
        };
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin is judged by its exit status below.
            let _ = stdin.write_all(server.as_bytes());
        }
        let deadline = Instant::now() + HELPER_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!("timed out after {HELPER_TIMEOUT:?}")));
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        };
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if !status.success() {
            // The helper protocol reports a missing entry as this message on stdout.
            if out.contains("credentials not found") {
                return Ok(None);
            }
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            let detail = format!("{} {}", out.trim(), err.trim());
            return Err(fail(format!("{status}: {}", detail.trim())));
        }
        let reply: HelperReply =
            serde_json::from_str(&out).map_err(|e| fail(format!("unreadable reply: {e}")))?;
        Ok(Some(Credential {
            username: reply.username,
            secret: reply.secret,
        }))
    }
}

fn docker_server_key(registry: &str) -> String {
    if registry == "docker.io" {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

impl CredentialStore for DockerConfigStore {
    fn get(&self, registry: &str) -> Result<Option<Credential>> {
        let registry = normalise_registry(registry);
        let cfg = self.config()?;
        if let Some((_, helper)) = cfg
            .cred_helpers
            .iter()
            .find(|(k, _)| normalise_registry(k) == registry)
        {
            return self.helper(helper, &docker_server_key(&registry));
        }
        if let Some((_, a)) = cfg
            .auths
            .iter()
            .find(|(k, _)| normalise_registry(k) == registry)
        {
            let bad = || CredentialError::BadAuth {
                registry: registry.clone(),
                path: self.path.clone(),
            };
            if let Some(auth) = a.auth.as_deref().filter(|s| !s.is_empty()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| bad())?;
                let text = String::from_utf8(raw).map_err(|_| bad())?;
                let (u, p) = text.split_once(':').ok_or_else(bad)?;
                return Ok(Some(Credential {
                    username: u.to_owned(),
                    secret: p.to_owned(),
                }));
            }
            if let (Some(u), Some(p)) = (&a.username, &a.password) {
                return Ok(Some(Credential {
                    username: u.clone(),
                    secret: p.clone(),
                }));
            }
        }
        match &cfg.creds_store {
            Some(store) => self.helper(store, &docker_server_key(&registry)),
            None => Ok(None),
        }
    }

    fn store(&self, _: &str, _: &Credential) -> Result<()> {
        Err(CredentialError::ReadOnly(self.path.display().to_string()))
    }

    fn erase(&self, _: &str) -> Result<bool> {
        Err(CredentialError::ReadOnly(self.path.display().to_string()))
    }

    fn list(&self) -> Result<Vec<(String, String)>> {
        let cfg = self.config()?;
        let mut out = Vec::new();
        for key in cfg.auths.keys() {
            let r = normalise_registry(key);
            if let Ok(Some(c)) = self.get(&r) {
                out.push((r, c.username));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Looks up credentials in several stores, first hit wins; writes go to the first store.
#[derive(Clone)]
pub struct CredentialChain {
    stores: Vec<Arc<dyn CredentialStore>>,
}

impl CredentialChain {
    /// `stores[0]` receives `store`/`erase`; lookups try every store in order.
    pub fn new(stores: Vec<Arc<dyn CredentialStore>>) -> CredentialChain {
        CredentialChain { stores }
    }
}

impl CredentialStore for CredentialChain {
    fn get(&self, registry: &str) -> Result<Option<Credential>> {
        for s in &self.stores {
            if let Some(c) = s.get(registry)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    fn store(&self, registry: &str, credential: &Credential) -> Result<()> {
        match self.stores.first() {
            Some(s) => s.store(registry, credential),
            None => Err(CredentialError::ReadOnly("empty credential chain".into())),
        }
    }

    fn erase(&self, registry: &str) -> Result<bool> {
        match self.stores.first() {
            Some(s) => s.erase(registry),
            None => Ok(false),
        }
    }

    fn list(&self) -> Result<Vec<(String, String)>> {
        let mut seen = BTreeMap::new();
        for s in &self.stores {
            for (r, u) in s.list()? {
                seen.entry(r).or_insert(u);
            }
        }
        Ok(seen.into_iter().collect())
    }
}

/// Credentials given with one request for one registry (Docker's `X-Registry-Auth`): used
/// instead of any stored login for that request, never written anywhere. Other registries
/// get none.
pub struct RequestCredentials {
    registry: String,
    credential: Credential,
}

impl RequestCredentials {
    /// `credential` for `registry` (any spelling [`normalise_registry`] accepts).
    pub fn new(registry: &str, credential: Credential) -> RequestCredentials {
        RequestCredentials {
            registry: normalise_registry(registry),
            credential,
        }
    }
}

impl CredentialStore for RequestCredentials {
    fn get(&self, registry: &str) -> Result<Option<Credential>> {
        Ok((normalise_registry(registry) == self.registry).then(|| self.credential.clone()))
    }

    fn store(&self, _registry: &str, _credential: &Credential) -> Result<()> {
        Err(CredentialError::ReadOnly(
            "credentials given with a request".into(),
        ))
    }

    fn erase(&self, _registry: &str) -> Result<bool> {
        Ok(false)
    }

    fn list(&self) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_credentials_answer_only_their_registry_and_store_nothing() {
        let c = RequestCredentials::new(
            "https://127.0.0.1:5001/v2/",
            Credential {
                username: "u".into(),
                secret: "p".into(),
            },
        );
        assert_eq!(c.get("127.0.0.1:5001").unwrap().unwrap().secret, "p");
        assert!(c.get("docker.io").unwrap().is_none());
        assert!(
            c.store("127.0.0.1:5001", &c.get("127.0.0.1:5001").unwrap().unwrap())
                .is_err()
        );
        assert!(c.list().unwrap().is_empty());
    }
    use std::os::unix::fs::PermissionsExt;

    fn cred(u: &str, p: &str) -> Credential {
        Credential {
            username: u.into(),
            secret: p.into(),
        }
    }

    #[test]
    fn file_store_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/credentials.json");
        let s = FileCredentialStore::new(&path);
        s.store("https://index.docker.io/v1/", &cred("me", "pw"))
            .unwrap();
        s.store("127.0.0.1:5000", &cred("u", "p")).unwrap();
        assert_eq!(s.get("docker.io").unwrap(), Some(cred("me", "pw")));
        assert_eq!(
            s.list().unwrap(),
            [
                ("127.0.0.1:5000".into(), "u".into()),
                ("docker.io".into(), "me".into())
            ]
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(s.erase("127.0.0.1:5000").unwrap());
        assert!(!s.erase("127.0.0.1:5000").unwrap());
        assert_eq!(s.get("127.0.0.1:5000").unwrap(), None);
        assert!(!format!("{:?}", cred("a", "topsecret")).contains("topsecret"));
    }

    #[test]
    fn docker_config_auths_helpers_and_store() {
        let dir = tempfile::tempdir().unwrap();
        // A real credential helper speaking the docker-credential protocol.
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\ncase \"$server\" in\n\
             helper.example:5000) echo '{\"ServerURL\":\"x\",\"Username\":\"hu\",\"Secret\":\"hs\"}';;\n\
             https://index.docker.io/v1/) echo '{\"ServerURL\":\"x\",\"Username\":\"hub\",\"Secret\":\"hubpw\"}';;\n\
             *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        std::fs::write(
            &cfg,
            format!(
                r#"{{"auths":{{"https://reg.example":{{"auth":"{auth}"}},"bad.example":{{"auth":"!!"}}}},
                   "credHelpers":{{"helper.example:5000":"fake"}},"credsStore":"fake","currentContext":"x"}}"#
            ),
        )
        .unwrap();
        let d = DockerConfigStore::new(&cfg).with_helper_dir(dir.path());
        assert_eq!(
            d.get("reg.example").unwrap(),
            Some(cred("alice", "s3cr:et"))
        );
        assert_eq!(
            d.get("helper.example:5000").unwrap(),
            Some(cred("hu", "hs"))
        );
        assert_eq!(d.get("docker.io").unwrap(), Some(cred("hub", "hubpw")));
        assert_eq!(d.get("nobody.example").unwrap(), None);
        assert!(
            d.get("bad.example")
                .unwrap_err()
                .to_string()
                .contains("not valid base64")
        );
        assert!(d.store("x", &cred("a", "b")).is_err());

        // Our file store wins over Docker's config in a chain.
        let f = Arc::new(FileCredentialStore::new(dir.path().join("ours.json")));
        f.store("reg.example", &cred("mine", "x")).unwrap();
        let chain = CredentialChain::new(vec![f, Arc::new(d)]);
        assert_eq!(chain.get("reg.example").unwrap(), Some(cred("mine", "x")));
        assert_eq!(
            chain.get("helper.example:5000").unwrap(),
            Some(cred("hu", "hs"))
        );
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.json");
        std::fs::write(&cfg, r#"{"credsStore":"nonexistent"}"#).unwrap();
        let d = DockerConfigStore::new(&cfg).with_helper_dir(dir.path());
        let err = d.get("x.example").unwrap_err().to_string();
        assert!(
            err.starts_with("credential helper docker-credential-nonexistent failed: cannot run"),
            "{err}"
        );
    }
}
