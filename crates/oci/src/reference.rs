//! Image references, parsed and normalised the way Docker does it.
//!
//! `busybox` means `docker.io/library/busybox:latest`; `host:5000/x/y:tag`, `name@sha256:…`
//! and `name:tag@sha256:…` are kept as written apart from that normalisation. This module
//! does no I/O.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry an unqualified name belongs to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The repository namespace single-component Docker Hub names live in.
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on `registry/repository`.
const MAX_NAME_LEN: usize = 255;
/// Docker's limit on a tag.
const MAX_TAG_LEN: usize = 128;

/// Why a reference string was refused. Each message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference: empty string")]
    Empty,
    #[error("invalid reference {reference:?}: repository name must be lowercase")]
    Uppercase { reference: String },
    #[error(
        "invalid reference {reference:?}: path component {component:?} must be lowercase letters, digits and single separators (., _, __, -)"
    )]
    BadComponent {
        reference: String,
        component: String,
    },
    #[error("invalid reference {reference:?}: bad registry host {registry:?}")]
    BadRegistry { reference: String, registry: String },
    #[error(
        "invalid reference {reference:?}: tag {tag:?} must be 1-128 characters of letters, digits, '_', '.', '-' and not start with '.' or '-'"
    )]
    BadTag { reference: String, tag: String },
    #[error("invalid reference {reference:?}: {source}")]
    BadDigest {
        reference: String,
        #[source]
        source: DigestError,
    },
    #[error("invalid reference {reference:?}: repository name longer than 255 characters")]
    TooLong { reference: String },
    #[error(
        "invalid reference {reference:?}: a scheme such as http:// is not part of an image reference"
    )]
    Scheme { reference: String },
}

impl ReferenceError {
    pub fn kind(&self) -> crate::ErrorKind {
        crate::ErrorKind::InvalidArgument
    }
}

/// A normalised image reference: registry, repository, and a tag, a digest or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises a reference as Docker does.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        input.parse()
    }

    /// Parses a reference whose registry, when it names none, is `default_registry` (the
    /// `registry.domain` property) instead of Docker Hub. As in Apple's `container`, only
    /// Docker Hub puts single-component names under `library/`: with `myreg:5000`,
    /// `alpine` is `myreg:5000/alpine:latest`.
    pub fn parse_with_default_registry(
        input: &str,
        default_registry: &str,
    ) -> Result<ImageRef, ReferenceError> {
        parse_in(input, default_registry)
    }

    /// The registry host, with port if one was given (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one. A reference without tag or digest got `latest`.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, ReferenceError> {
        check_tag(tag, tag)?;
        Ok(ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }

    /// The same repository pinned to `digest`, without tag.
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository, tag and digest on another registry (for pull mirrors).
    pub fn with_registry(&self, registry: &str) -> Result<ImageRef, ReferenceError> {
        let mut out = self.clone();
        out.registry = registry.to_owned();
        // Re-parse so the host is validated and the result is in normal form.
        ImageRef::parse(&out.to_string())
    }

    /// The short form Docker prints: `busybox:latest` rather than
    /// `docker.io/library/busybox:latest`.
    pub fn familiar(&self) -> String {
        let short = self
            .repository
            .strip_prefix("library/")
            .unwrap_or(&self.repository);
        // `docker.io/a.b/c` must keep its registry: `a.b/c` would read as registry `a.b`.
        let ambiguous = self
            .repository
            .split_once('/')
            .is_some_and(|(first, _)| split_registry(&format!("{first}/x")).0 != DEFAULT_REGISTRY);
        let mut out = if self.registry == DEFAULT_REGISTRY && !ambiguous {
            short.to_owned()
        } else {
            self.name()
        };
        push_suffix(&mut out, self.tag.as_deref(), self.digest.as_ref());
        out
    }

    /// The same reference in oci-client's type, for registry calls.
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.to_string(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned()),
            ),
        }
    }
}

fn push_suffix(out: &mut String, tag: Option<&str>, digest: Option<&Digest>) {
    if let Some(t) = tag {
        out.push(':');
        out.push_str(t);
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(&d.to_string());
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        push_suffix(&mut out, self.tag.as_deref(), self.digest.as_ref());
        f.write_str(&out)
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<ImageRef, ReferenceError> {
        parse_in(input, DEFAULT_REGISTRY)
    }
}

fn parse_in(input: &str, default_registry: &str) -> Result<ImageRef, ReferenceError> {
    let reference = || input.to_owned();
    if input.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if input.contains("://") {
        return Err(ReferenceError::Scheme {
            reference: reference(),
        });
    }
    let (rest, digest) = match input.rsplit_once('@') {
        Some((rest, d)) => {
            let digest = d
                .parse::<Digest>()
                .map_err(|source| ReferenceError::BadDigest {
                    reference: reference(),
                    source,
                })?;
            (rest, Some(digest))
        }
        None => (input, None),
    };
    // A ':' after the last '/' starts the tag; one before it is a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            check_tag(input, tag)?;
            (&rest[..last_slash + i], Some(tag.to_owned()))
        }
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(ReferenceError::BadComponent {
            reference: reference(),
            component: String::new(),
        });
    }
    let (registry, repository) = match split_registry(name) {
        (DEFAULT_REGISTRY, repository) if !names_docker_hub(name) => (default_registry, repository),
        split => split,
    };
    if !valid_registry(registry) {
        return Err(ReferenceError::BadRegistry {
            reference: reference(),
            registry: registry.to_owned(),
        });
    }
    for component in repository.split('/') {
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                reference: reference(),
            });
        }
        if !valid_component(component) {
            return Err(ReferenceError::BadComponent {
                reference: reference(),
                component: component.to_owned(),
            });
        }
    }
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{repository}")
    } else {
        repository.to_owned()
    };
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(ReferenceError::TooLong {
            reference: reference(),
        });
    }
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_owned()),
        (tag, _) => tag,
    };
    Ok(ImageRef {
        registry: registry.to_owned(),
        repository,
        tag,
        digest,
    })
}

/// Whether `name` names Docker Hub itself (`docker.io/...`, `index.docker.io/...`) rather
/// than leaving the registry out.
fn names_docker_hub(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(first, _)| first == DEFAULT_REGISTRY || first == "index.docker.io")
}

/// Docker's rule: the first path component is a registry only if it looks like a host
/// (has a '.' or ':', or is `localhost`) or has an uppercase letter.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn check_tag(reference: &str, tag: &str) -> Result<(), ReferenceError> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::BadTag {
            reference: reference.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is DNS labels or a bracketed IPv6 address.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match tail {
                    "" => return true,
                    t => match t.strip_prefix(':') {
                        Some(p) => ("", Some(p)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.is_empty() && r.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn default_registry_takes_unqualified_names_without_library() {
        let p = |s: &str| {
            ImageRef::parse_with_default_registry(s, "myreg:5000")
                .unwrap()
                .to_string()
        };
        assert_eq!(p("alpine"), "myreg:5000/alpine:latest");
        assert_eq!(p("user/app:1"), "myreg:5000/user/app:1");
        assert_eq!(p(&format!("alpine@{D}")), format!("myreg:5000/alpine@{D}"));
        // Names that carry a registry keep it, Docker Hub included.
        assert_eq!(p("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            p("index.docker.io/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(p("ghcr.io/o/r:t"), "ghcr.io/o/r:t");
        assert_eq!(p("localhost/x"), "localhost/x:latest");
        // Docker Hub as the default is Docker's own rule.
        assert_eq!(
            ImageRef::parse_with_default_registry("alpine", "docker.io")
                .unwrap()
                .to_string(),
            "docker.io/library/alpine:latest"
        );
        assert!(matches!(
            ImageRef::parse_with_default_registry("alpine", "bad host"),
            Err(ReferenceError::BadRegistry { .. })
        ));
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("host:5000/x/y:tag"), "host:5000/x/y:tag");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("127.0.0.1:5000/a"), "127.0.0.1:5000/a:latest");
        assert_eq!(norm("[::1]:5000/a:b"), "[::1]:5000/a:b");
        assert_eq!(
            norm(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(norm(&format!("a/b:t@{D}")), format!("docker.io/a/b:t@{D}"));
        // Docker reads `localhost:5000` alone as name `localhost`, tag `5000`.
        assert_eq!(norm("localhost:5000"), "docker.io/library/localhost:5000");
        let r = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.familiar(), format!("busybox@{D}"));
        assert_eq!(
            ImageRef::parse("q.io/a/b:c").unwrap().familiar(),
            "q.io/a/b:c"
        );
    }

    #[test]
    fn refuses_bad_references_with_clear_messages() {
        let err = |s: &str| ImageRef::parse(s).unwrap_err().to_string();
        assert_eq!(err(""), "invalid reference: empty string");
        assert_eq!(
            err("Busybox"),
            "invalid reference \"Busybox\": repository name must be lowercase"
        );
        assert!(err("busybox:").contains("tag \"\""));
        assert!(err("busybox:-x").contains("tag \"-x\""));
        assert!(err("a//b").contains("path component \"\""));
        assert!(err("a/b_-c").contains("path component \"b_-c\""));
        assert!(err("busybox@sha256:1234").contains("invalid digest"));
        assert!(err("busybox@md5:1234").contains("unsupported digest algorithm"));
        assert!(err("http://host/x").contains("scheme"));
        assert!(err("bad_host.io:99x/x").contains("bad registry host"));
        assert!(err(&format!("x/{}", "a".repeat(260))).contains("longer than 255"));
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}((\\.|_|__|-{1,2})[a-z0-9]{1,6}){0,2}"
    }

    fn registry() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("docker.io".to_owned()),
            Just("localhost".to_owned()),
            "[a-z][a-z0-9-]{0,6}[a-z0-9]\\.[a-z]{2,4}(:[0-9]{1,5})?",
            "(25[0-5]|1[0-9]{2}|[1-9]?[0-9])\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}:[0-9]{2,5}",
        ]
    }

    fn image_ref() -> impl Strategy<Value = ImageRef> {
        (
            registry(),
            proptest::collection::vec(component(), 1..4),
            proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}"),
            proptest::option::of("[0-9a-f]{64}"),
        )
            .prop_map(|(registry, mut path, tag, digest)| {
                if registry == DEFAULT_REGISTRY && path.len() == 1 {
                    path.insert(0, OFFICIAL_NAMESPACE.to_owned());
                }
                let digest = digest.map(|h| Digest::from_hex(&h).unwrap());
                let tag = if tag.is_none() && digest.is_none() {
                    Some(DEFAULT_TAG.to_owned())
                } else {
                    tag
                };
                ImageRef {
                    registry,
                    repository: path.join("/"),
                    tag,
                    digest,
                }
            })
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(r in image_ref()) {
            let shown = r.to_string();
            prop_assert_eq!(ImageRef::parse(&shown).unwrap(), r.clone());
            // The familiar form names the same image.
            prop_assert_eq!(ImageRef::parse(&r.familiar()).unwrap(), r);
        }

        #[test]
        fn parse_never_panics_and_normal_form_is_a_fixed_point(s in "[a-zA-Z0-9:/@._\\-\\[\\]]{0,40}") {
            if let Ok(r) = ImageRef::parse(&s) {
                let again = ImageRef::parse(&r.to_string()).unwrap();
                prop_assert_eq!(again, r);
            }
        }
    }
}
