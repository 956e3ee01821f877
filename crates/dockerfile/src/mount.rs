//! `RUN --mount=type=…,key=value,…`: bind, cache, tmpfs, secret and ssh mounts with the
//! defaults the Dockerfile reference gives them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    /// Where it appears in the RUN. Secret: `/run/secrets/<id>` unless `env` is given;
    /// ssh: None means the executor's default agent socket path.
    pub target: Option<String>,
    /// Path inside `from` (bind, cache) or the context.
    pub source: Option<String>,
    /// Stage name, stage index or image the mount's content comes from.
    pub from: Option<String>,
    /// Bind mounts are read-only unless `rw`; cache mounts are writable unless `ro`.
    pub readonly: bool,
    /// Cache: defaults to the target; secret: to the target's base name; ssh: `default`.
    pub id: Option<String>,
    pub sharing: CacheSharing,
    /// File mode (octal): secret 0400 and ssh 0600 by default; cache directory 0755.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret and ssh: fail the step when the secret or agent is not provided.
    pub required: bool,
    /// Tmpfs size in bytes.
    pub size: Option<u64>,
    /// Secret: also (or only) expose it as this environment variable.
    pub env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("unsupported mount type {0:?}")]
    UnsupportedType(String),
    #[error("unexpected key '{key}' in '{field}'")]
    UnexpectedKey { key: String, field: String },
    #[error("invalid value {value:?} for {key} in mount")]
    InvalidValue { key: String, value: String },
    #[error("mount type {0} requires a target")]
    MissingTarget(&'static str),
    #[error("secret mount requires an id, a target or an env")]
    MissingSecretId,
    #[error("unterminated quote in mount option")]
    UnterminatedQuote,
    /// A substitution in an option's value failed.
    #[error("{0}")]
    Expand(String),
}

/// Splits on commas outside double quotes, as Go's CSV reader does for `--mount`.
fn fields(text: &str) -> Result<Vec<String>, MountError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err(MountError::UnterminatedQuote);
    }
    out.push(cur);
    Ok(out)
}

fn parse_bool(key: &str, value: Option<&str>) -> Result<bool, MountError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(MountError::InvalidValue {
            key: key.to_string(),
            value: value.unwrap_or_default().to_string(),
        }),
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(p) => (&lower[..p], &lower[p..]),
        None => (lower, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let mul: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Parses one `--mount` value as written.
pub fn parse_mount(text: &str) -> Result<Mount, MountError> {
    parse_mount_with(text, &mut |v| Ok(v.to_string()))
}

/// Parses one `--mount` value, passing each option's value through `expand` first (the
/// build's ARG and ENV substitution), as Docker does before it reads the options.
pub fn parse_mount_with(
    text: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Mount, MountError> {
    let mut kind = MountType::Bind;
    let mut m = Mount {
        kind,
        target: None,
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: CacheSharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let mut readonly: Option<bool> = None;
    let mut options: Vec<(String, String, Option<String>)> = Vec::new();
    for field in fields(text)? {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (
                k.trim().to_ascii_lowercase(),
                Some(expand(v.trim()).map_err(MountError::Expand)?),
            ),
            None => (field.to_ascii_lowercase(), None),
        };
        options.push((field.to_string(), key, value));
    }
    // The type decides the defaults, so read it first wherever it is written.
    for (_, key, value) in &options {
        if key == "type" {
            kind = match value
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .as_str()
            {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => return Err(MountError::UnsupportedType(other.to_string())),
            };
        }
    }
    m.kind = kind;
    for (field, key, value) in &options {
        let key = key.clone();
        let value = value.as_deref();
        let text_value = || {
            value
                .map(str::to_string)
                .ok_or_else(|| MountError::InvalidValue {
                    key: key.clone(),
                    value: String::new(),
                })
        };
        let number = |radix: u32| {
            value
                .and_then(|v| u32::from_str_radix(v, radix).ok())
                .ok_or_else(|| MountError::InvalidValue {
                    key: key.clone(),
                    value: value.unwrap_or_default().to_string(),
                })
        };
        match key.as_str() {
            "type" => {}
            "from" => m.from = Some(text_value()?),
            "source" | "src" => m.source = Some(text_value()?),
            "target" | "dst" | "destination" => m.target = Some(text_value()?),
            "readonly" | "ro" => readonly = Some(parse_bool(&key, value)?),
            "readwrite" | "rw" => readonly = Some(!parse_bool(&key, value)?),
            "required" => m.required = parse_bool(&key, value)?,
            "id" => m.id = Some(text_value()?),
            "sharing" => {
                m.sharing = match value.map(str::to_ascii_lowercase).as_deref() {
                    Some("shared") => CacheSharing::Shared,
                    Some("private") => CacheSharing::Private,
                    Some("locked") => CacheSharing::Locked,
                    _ => {
                        return Err(MountError::InvalidValue {
                            key,
                            value: value.unwrap_or_default().to_string(),
                        });
                    }
                }
            }
            "mode" => m.mode = Some(number(8)?),
            "uid" => m.uid = Some(number(10)?),
            "gid" => m.gid = Some(number(10)?),
            "size" if kind == MountType::Tmpfs => {
                m.size =
                    Some(
                        value
                            .and_then(parse_size)
                            .ok_or_else(|| MountError::InvalidValue {
                                key: key.clone(),
                                value: value.unwrap_or_default().to_string(),
                            })?,
                    )
            }
            "env" if kind == MountType::Secret => m.env = Some(text_value()?),
            _ => {
                return Err(MountError::UnexpectedKey {
                    key,
                    field: field.to_string(),
                });
            }
        }
    }
    m.readonly = readonly.unwrap_or(kind == MountType::Bind);
    match kind {
        MountType::Bind | MountType::Cache | MountType::Tmpfs if m.target.is_none() => {
            return Err(MountError::MissingTarget(match kind {
                MountType::Bind => "bind",
                MountType::Cache => "cache",
                _ => "tmpfs",
            }));
        }
        MountType::Cache if m.id.is_none() => m.id.clone_from(&m.target),
        MountType::Secret => {
            if m.id.is_none() {
                m.id = m.source.clone().or_else(|| {
                    m.target
                        .as_deref()
                        .and_then(|t| t.rsplit('/').find(|s| !s.is_empty()))
                        .map(str::to_string)
                });
            }
            let Some(id) = m.id.clone() else {
                return Err(MountError::MissingSecretId);
            };
            if m.target.is_none() && m.env.is_none() {
                m.target = Some(format!("/run/secrets/{id}"));
            }
            m.mode.get_or_insert(0o400);
        }
        MountType::Ssh => {
            m.id.get_or_insert_with(|| "default".to_string());
            m.mode.get_or_insert(0o600);
        }
        _ => {}
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_defaults_read_only() {
        let m = parse_mount("target=/src,from=build,source=/out").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(m.target.as_deref(), Some("/src"));
        assert_eq!(m.from.as_deref(), Some("build"));
        assert_eq!(m.source.as_deref(), Some("/out"));
        assert!(m.readonly);
        assert!(!parse_mount("type=bind,dst=/x,rw").unwrap().readonly);
    }

    #[test]
    fn cache_id_defaults_to_target() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1000")
            .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.id.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, CacheSharing::Locked);
        assert_eq!(m.mode, Some(0o700));
        assert_eq!(m.uid, Some(1000));
        assert!(!m.readonly);
        let m = parse_mount("type=cache,id=go,target=/go,ro").unwrap();
        assert_eq!(m.id.as_deref(), Some("go"));
        assert!(m.readonly);
    }

    #[test]
    fn secret_defaults() {
        let m = parse_mount("type=secret,id=aws").unwrap();
        assert_eq!(m.target.as_deref(), Some("/run/secrets/aws"));
        assert_eq!(m.mode, Some(0o400));
        assert!(!m.required);
        let m = parse_mount("type=secret,target=/root/.aws/credentials,required").unwrap();
        assert_eq!(m.id.as_deref(), Some("credentials"));
        assert!(m.required);
        let m = parse_mount("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!((m.target, m.env.as_deref()), (None, Some("TOKEN")));
        assert_eq!(
            parse_mount("type=secret").unwrap_err(),
            MountError::MissingSecretId
        );
    }

    #[test]
    fn ssh_and_tmpfs() {
        let m = parse_mount("type=ssh").unwrap();
        assert_eq!(
            (m.id.as_deref(), m.mode, m.target),
            (Some("default"), Some(0o600), None)
        );
        let m = parse_mount("type=tmpfs,target=/tmp,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_mount("type=nfs,target=/x").unwrap_err().to_string(),
            "unsupported mount type \"nfs\""
        );
        assert_eq!(
            parse_mount("target=/x,colour=blue")
                .unwrap_err()
                .to_string(),
            "unexpected key 'colour' in 'colour=blue'"
        );
        assert_eq!(
            parse_mount("type=cache").unwrap_err().to_string(),
            "mount type cache requires a target"
        );
        assert_eq!(
            parse_mount("type=cache,target=/x,sharing=maybe")
                .unwrap_err()
                .to_string(),
            "invalid value \"maybe\" for sharing in mount"
        );
        assert!(parse_mount("type=tmpfs,target=/x,size=lots").is_err());
    }

    #[test]
    fn values_are_expanded_before_they_are_read() {
        let mut expand = |v: &str| -> Result<String, String> {
            Ok(v.replace("$T", "cache").replace("$UID", "1000"))
        };
        let m = parse_mount_with("type=$T,target=/c,uid=$UID", &mut expand).unwrap();
        assert_eq!((m.kind, m.uid), (MountType::Cache, Some(1000)));
        let mut failing = |_: &str| -> Result<String, String> { Err("bad".into()) };
        assert_eq!(
            parse_mount_with("target=/x", &mut failing).unwrap_err(),
            MountError::Expand("bad".into())
        );
    }

    #[test]
    fn quoted_fields() {
        let m = parse_mount("\"target=/a,b\",type=bind").unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
    }
}
