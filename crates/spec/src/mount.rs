//! Filesystems attached to a container: `-v/--volume`, `--mount` and `--tmpfs`.
//!
//! All three produce a [`Mount`]. Its `Display` is the `--mount` form, so any mount can be
//! written back as a flag and parsed again.
//!
//! `-v` rules (Docker's, with Apple's reading of the source): one part is an anonymous
//! volume; with two or three parts a source that is absolute or starts with `.` or `~` is a
//! host path (a relative one is resolved against the CLI's working directory by the caller),
//! anything else is a volume name, and a name holding `/` is an error.

use std::fmt;
use std::str::FromStr;

use crate::name::validate_volume_name;
use crate::size::ByteSize;

/// Why a mount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// A `-v` value is wrong; `reason` says which part.
    #[error("invalid volume spec {spec:?}: {reason}")]
    Volume {
        /// What the user typed.
        spec: String,
        /// What was wrong.
        reason: String,
    },
    /// A `--mount` value is wrong.
    #[error("invalid mount spec {spec:?}: {reason}")]
    Mount {
        /// What the user typed.
        spec: String,
        /// What was wrong.
        reason: String,
    },
    /// A `--tmpfs` value is wrong.
    #[error("invalid tmpfs spec {spec:?}: {reason}")]
    Tmpfs {
        /// What the user typed.
        spec: String,
        /// What was wrong.
        reason: String,
    },
}

/// One filesystem attached to a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mount {
    /// A host path shared into the guest (virtiofs).
    Bind {
        /// The host path, as typed (may be relative: the caller resolves it).
        source: String,
        /// The absolute path in the container.
        target: String,
        /// Mounted read-only.
        readonly: bool,
    },
    /// A named or anonymous volume (an ext4 disk the daemon owns).
    Volume {
        /// The volume's name; `None` creates an anonymous volume.
        name: Option<String>,
        /// The absolute path in the container.
        target: String,
        /// Mounted read-only.
        readonly: bool,
    },
    /// A tmpfs, in the guest's memory.
    Tmpfs {
        /// The absolute path in the container.
        target: String,
        /// The size limit; `None` is the kernel's default (half the guest's memory).
        size: Option<ByteSize>,
        /// The mode of the root directory (e.g. 0o1777).
        mode: Option<u32>,
        /// Other mount flags: `ro`, `noexec`, `nosuid`, `nodev` and their opposites.
        options: Vec<String>,
    },
}

impl Mount {
    /// The absolute path in the container.
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::Volume { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        }
    }

    /// Whether the container sees it read-only.
    pub fn readonly(&self) -> bool {
        match self {
            Mount::Bind { readonly, .. } | Mount::Volume { readonly, .. } => *readonly,
            Mount::Tmpfs { options, .. } => options.iter().any(|o| o == "ro"),
        }
    }
}

/// Checks a container path: absolute, and not `/` itself.
fn check_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        Err("no container path".to_owned())
    } else if !target.starts_with('/') {
        Err(format!("container path {target:?} is not absolute"))
    } else if target.trim_end_matches('/').is_empty() {
        Err("container path may not be '/'".to_owned())
    } else {
        Ok(())
    }
}

fn is_host_path(source: &str) -> bool {
    source.starts_with('/') || source.starts_with('.') || source.starts_with('~')
}

/// Parses one `-v/--volume` value.
pub fn parse_volume(spec: &str) -> Result<Mount, MountError> {
    let fail = |reason: String| MountError::Volume {
        spec: spec.to_owned(),
        reason,
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, None),
        [source, target] => (Some(*source), *target, None),
        [source, target, options] => (Some(*source), *target, Some(*options)),
        _ => {
            return Err(fail(
                "too many ':' (expected [source:]container-path[:options])".into(),
            ));
        }
    };
    check_target(target).map_err(fail)?;
    let mut readonly = false;
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        match option {
            "ro" | "readonly" => readonly = true,
            "rw" => readonly = false,
            // SELinux relabelling and propagation have no meaning in a VM share: accepted
            // for compatibility with Docker command lines, ignored.
            "z" | "Z" | "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave"
            | "consistent" | "cached" | "delegated" => {}
            other => {
                return Err(fail(format!(
                    "unknown option {other:?} (expected ro or rw)"
                )));
            }
        }
    }
    let target = target.to_owned();
    match source {
        None => Ok(Mount::Volume {
            name: None,
            target,
            readonly,
        }),
        Some("") => Err(fail("empty source".into())),
        Some(source) if is_host_path(source) => Ok(Mount::Bind {
            source: source.to_owned(),
            target,
            readonly,
        }),
        Some(name) if name.contains('/') => Err(fail(format!(
            "volume name {name:?} may not contain '/' (write a host path as an absolute or ./relative path)"
        ))),
        Some(name) => {
            validate_volume_name(name).map_err(|e| fail(e.to_string()))?;
            Ok(Mount::Volume {
                name: Some(name.to_owned()),
                target,
                readonly,
            })
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "" | "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn parse_mode(value: &str) -> Option<u32> {
    u32::from_str_radix(value, 8).ok().filter(|m| *m <= 0o7777)
}

/// Parses one `--mount` value: comma-separated `key=value` options.
///
/// Keys: `type` (`bind`, `volume` (the default) or `tmpfs`), `source`/`src`,
/// `target`/`destination`/`dst`, `readonly`/`ro` (optionally `=true|false`), and for tmpfs
/// only `size` and `mode` (octal). Any other key is refused.
pub fn parse_mount(spec: &str) -> Result<Mount, MountError> {
    let fail = |reason: String| MountError::Mount {
        spec: spec.to_owned(),
        reason,
    };
    let mut kind = None;
    let mut source = None;
    let mut target = None;
    let mut readonly = false;
    let mut size = None;
    let mut mode = None;
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let need = |value: Option<&str>| {
            value
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| fail(format!("option {key:?} needs a value")))
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => kind = Some(need(value)?),
            "source" | "src" => source = Some(need(value)?),
            "target" | "destination" | "dst" => target = Some(need(value)?),
            "readonly" | "ro" => {
                readonly = parse_bool(value.unwrap_or("")).ok_or_else(|| {
                    fail(format!(
                        "readonly value {:?} is not true or false",
                        value.unwrap_or("")
                    ))
                })?;
            }
            "size" | "tmpfs-size" => {
                let v = need(value)?;
                size = Some(v.parse::<ByteSize>().map_err(|e| fail(e.to_string()))?);
            }
            "mode" | "tmpfs-mode" => {
                let v = need(value)?;
                mode = Some(
                    parse_mode(&v)
                        .ok_or_else(|| fail(format!("mode {v:?} is not an octal file mode")))?,
                );
            }
            "" => return Err(fail("empty option".into())),
            _ => return Err(fail(format!("unknown option {key:?}"))),
        }
    }
    let target = target.ok_or_else(|| fail("no target (target=/path)".into()))?;
    check_target(&target).map_err(fail)?;
    let kind = kind.unwrap_or_else(|| "volume".to_owned());
    if kind != "tmpfs" && (size.is_some() || mode.is_some()) {
        return Err(fail(format!(
            "size and mode apply to tmpfs mounts only, not {kind}"
        )));
    }
    match kind.as_str() {
        "bind" => {
            let source = source.ok_or_else(|| fail("a bind mount needs a source".into()))?;
            Ok(Mount::Bind {
                source,
                target,
                readonly,
            })
        }
        "volume" => {
            if let Some(name) = &source {
                if name.contains('/') {
                    return Err(fail(format!(
                        "volume name {name:?} may not contain '/' (use type=bind for a host path)"
                    )));
                }
                validate_volume_name(name).map_err(|e| fail(e.to_string()))?;
            }
            Ok(Mount::Volume {
                name: source,
                target,
                readonly,
            })
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(fail("a tmpfs mount takes no source".into()));
            }
            Ok(Mount::Tmpfs {
                target,
                size,
                mode,
                options: if readonly {
                    vec!["ro".to_owned()]
                } else {
                    Vec::new()
                },
            })
        }
        other => Err(fail(format!("type {other:?} is not bind, volume or tmpfs"))),
    }
}

const TMPFS_FLAGS: [&str; 10] = [
    "ro", "rw", "noexec", "exec", "nosuid", "suid", "nodev", "dev", "noatime", "atime",
];

/// Parses one `--tmpfs PATH[:options]` value, options as in mount(8): `size=64m`,
/// `mode=1777` and the flags `ro rw noexec exec nosuid suid nodev dev noatime atime`.
pub fn parse_tmpfs(spec: &str) -> Result<Mount, MountError> {
    let fail = |reason: String| MountError::Tmpfs {
        spec: spec.to_owned(),
        reason,
    };
    let (target, options) = match spec.split_once(':') {
        Some((t, o)) => (t, Some(o)),
        None => (spec, None),
    };
    check_target(target).map_err(fail)?;
    let (mut size, mut mode, mut flags) = (None, None, Vec::new());
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        match option.split_once('=') {
            Some(("size", v)) => {
                size = Some(v.parse::<ByteSize>().map_err(|e| fail(e.to_string()))?)
            }
            Some(("mode", v)) => {
                mode = Some(
                    parse_mode(v)
                        .ok_or_else(|| fail(format!("mode {v:?} is not an octal file mode")))?,
                )
            }
            None if TMPFS_FLAGS.contains(&option) => flags.push(option.to_owned()),
            _ => return Err(fail(format!("unknown option {option:?}"))),
        }
    }
    Ok(Mount::Tmpfs {
        target: target.to_owned(),
        size,
        mode,
        options: flags,
    })
}

impl FromStr for Mount {
    type Err = MountError;

    /// The `--mount` syntax.
    fn from_str(s: &str) -> Result<Mount, MountError> {
        parse_mount(s)
    }
}

impl fmt::Display for Mount {
    /// The `--mount` form, which [`parse_mount`] reads back. Tmpfs flags other than `ro`
    /// have no `--mount` key; [`Mount::to_tmpfs_flag`] keeps them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mount::Bind {
                source,
                target,
                readonly,
            } => {
                write!(f, "type=bind,source={source},target={target}")?;
                if *readonly {
                    f.write_str(",readonly")?;
                }
            }
            Mount::Volume {
                name,
                target,
                readonly,
            } => {
                f.write_str("type=volume")?;
                if let Some(name) = name {
                    write!(f, ",source={name}")?;
                }
                write!(f, ",target={target}")?;
                if *readonly {
                    f.write_str(",readonly")?;
                }
            }
            Mount::Tmpfs {
                target,
                size,
                mode,
                options,
            } => {
                write!(f, "type=tmpfs,target={target}")?;
                if let Some(size) = size {
                    write!(f, ",size={size}")?;
                }
                if let Some(mode) = mode {
                    write!(f, ",mode={mode:o}")?;
                }
                if options.iter().any(|o| o == "ro") {
                    f.write_str(",readonly")?;
                }
            }
        }
        Ok(())
    }
}

impl Mount {
    /// A tmpfs as a `--tmpfs` value (keeps every flag); `None` for other kinds.
    pub fn to_tmpfs_flag(&self) -> Option<String> {
        let Mount::Tmpfs {
            target,
            size,
            mode,
            options,
        } = self
        else {
            return None;
        };
        let mut parts: Vec<String> = options.clone();
        if let Some(size) = size {
            parts.push(format!("size={size}"));
        }
        if let Some(mode) = mode {
            parts.push(format!("mode={mode:o}"));
        }
        Some(if parts.is_empty() {
            target.clone()
        } else {
            format!("{target}:{}", parts.join(","))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn volume_flag_forms() {
        assert_eq!(
            parse_volume("/data").unwrap(),
            Mount::Volume {
                name: None,
                target: "/data".into(),
                readonly: false
            }
        );
        assert_eq!(
            parse_volume("cache:/var/cache:ro").unwrap(),
            Mount::Volume {
                name: Some("cache".into()),
                target: "/var/cache".into(),
                readonly: true
            }
        );
        assert_eq!(
            parse_volume("/srv/www:/usr/share/nginx/html:ro").unwrap(),
            Mount::Bind {
                source: "/srv/www".into(),
                target: "/usr/share/nginx/html".into(),
                readonly: true
            }
        );
        assert!(matches!(
            parse_volume("./src:/src").unwrap(),
            Mount::Bind { .. }
        ));
        assert!(matches!(
            parse_volume(".:/src").unwrap(),
            Mount::Bind { .. }
        ));
    }

    #[test]
    fn volume_flag_errors() {
        let e = |s: &str| parse_volume(s).unwrap_err().to_string();
        assert_eq!(
            e("data"),
            r#"invalid volume spec "data": container path "data" is not absolute"#
        );
        assert_eq!(
            e("x:data"),
            r#"invalid volume spec "x:data": container path "data" is not absolute"#
        );
        assert_eq!(
            e("a/b:/x"),
            r#"invalid volume spec "a/b:/x": volume name "a/b" may not contain '/' (write a host path as an absolute or ./relative path)"#
        );
        assert_eq!(
            e("v:/x:rx"),
            r#"invalid volume spec "v:/x:rx": unknown option "rx" (expected ro or rw)"#
        );
        assert_eq!(
            e("v:/"),
            r#"invalid volume spec "v:/": container path may not be '/'"#
        );
        assert!(e("a:b:c:d").contains("too many ':'"));
        assert!(e("-v:/x").contains("invalid volume name"));
    }

    #[test]
    fn mount_flag_forms_and_errors() {
        assert_eq!(
            parse_mount("type=bind,src=/h,dst=/c,readonly").unwrap(),
            Mount::Bind {
                source: "/h".into(),
                target: "/c".into(),
                readonly: true
            }
        );
        assert_eq!(
            parse_mount("target=/c").unwrap(),
            Mount::Volume {
                name: None,
                target: "/c".into(),
                readonly: false
            }
        );
        assert_eq!(
            parse_mount("type=tmpfs,destination=/t,size=64m,mode=1777").unwrap(),
            Mount::Tmpfs {
                target: "/t".into(),
                size: Some(ByteSize(64 << 20)),
                mode: Some(0o1777),
                options: vec![]
            }
        );
        let e = |s: &str| parse_mount(s).unwrap_err().to_string();
        assert_eq!(
            e("type=bind,target=/c,foo=1"),
            r#"invalid mount spec "type=bind,target=/c,foo=1": unknown option "foo""#
        );
        assert_eq!(
            e("type=bind,target=/c"),
            r#"invalid mount spec "type=bind,target=/c": a bind mount needs a source"#
        );
        assert_eq!(
            e("type=nfs,target=/c"),
            r#"invalid mount spec "type=nfs,target=/c": type "nfs" is not bind, volume or tmpfs"#
        );
        assert_eq!(
            e("type=volume,src=/c"),
            r#"invalid mount spec "type=volume,src=/c": no target (target=/path)"#
        );
        assert_eq!(
            e("type=volume,src=a/b,dst=/c"),
            r#"invalid mount spec "type=volume,src=a/b,dst=/c": volume name "a/b" may not contain '/' (use type=bind for a host path)"#
        );
        assert_eq!(
            e("type=bind,src=/a,dst=/c,size=1g"),
            r#"invalid mount spec "type=bind,src=/a,dst=/c,size=1g": size and mode apply to tmpfs mounts only, not bind"#
        );
        assert_eq!(
            e("type=tmpfs,src=x,dst=/c"),
            r#"invalid mount spec "type=tmpfs,src=x,dst=/c": a tmpfs mount takes no source"#
        );
        assert!(e("type=tmpfs,dst=/c,mode=999").contains("is not an octal file mode"));
        assert!(e("type=bind,src=/a,dst=/c,ro=maybe").contains("is not true or false"));
    }

    #[test]
    fn tmpfs_flag() {
        let m = parse_tmpfs("/run:rw,noexec,size=65536k,mode=1777").unwrap();
        assert_eq!(
            m,
            Mount::Tmpfs {
                target: "/run".into(),
                size: Some(ByteSize(64 << 20)),
                mode: Some(0o1777),
                options: vec!["rw".into(), "noexec".into()]
            }
        );
        assert_eq!(
            m.to_tmpfs_flag().unwrap(),
            "/run:rw,noexec,size=64m,mode=1777"
        );
        assert_eq!(
            parse_tmpfs("/run:exec,bogus").unwrap_err().to_string(),
            r#"invalid tmpfs spec "/run:exec,bogus": unknown option "bogus""#
        );
        assert_eq!(
            parse_tmpfs("run").unwrap_err().to_string(),
            r#"invalid tmpfs spec "run": container path "run" is not absolute"#
        );
    }

    fn arb_path() -> impl Strategy<Value = String> {
        "(/[a-z0-9_.-]{1,8}){1,3}"
    }

    fn arb_mount() -> impl Strategy<Value = Mount> {
        prop_oneof![
            (arb_path(), arb_path(), any::<bool>()).prop_map(|(source, target, readonly)| {
                Mount::Bind {
                    source,
                    target,
                    readonly,
                }
            }),
            (
                prop::option::of("[a-z0-9][a-z0-9_.-]{0,10}"),
                arb_path(),
                any::<bool>()
            )
                .prop_map(|(name, target, readonly)| Mount::Volume {
                    name,
                    target,
                    readonly
                }),
            (
                arb_path(),
                prop::option::of(any::<u32>()),
                prop::option::of(0u32..=0o7777),
                any::<bool>()
            )
                .prop_map(|(target, size, mode, ro)| Mount::Tmpfs {
                    target,
                    size: size.map(|s| ByteSize(u64::from(s))),
                    mode,
                    options: if ro { vec!["ro".into()] } else { vec![] },
                }),
        ]
    }

    proptest! {
        #[test]
        fn mount_display_round_trips(m in arb_mount()) {
            prop_assert_eq!(parse_mount(&m.to_string()).unwrap(), m);
        }

        #[test]
        fn tmpfs_flag_round_trips(m in arb_mount()) {
            if let Some(flag) = m.to_tmpfs_flag() {
                prop_assert_eq!(parse_tmpfs(&flag).unwrap(), m);
            }
        }

        #[test]
        fn parsers_never_panic(text in ".{0,40}") {
            let _ = parse_volume(&text);
            let _ = parse_mount(&text);
            let _ = parse_tmpfs(&text);
        }
    }
}
