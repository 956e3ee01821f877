//! Resolving Docker's `--user` against a container's own /etc/passwd and /etc/group.
//!
//! The guest binary is static glibc, so NSS (`getpwnam`) must never be called: the files are
//! parsed here. The rules follow what runc and Docker do: a numeric uid that has no passwd
//! entry is still accepted (gid 0, home "/"), a name that has none is an error, and
//! supplementary groups are every group that lists the user as a member.

use std::path::Path;

/// Errors of user resolution.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid user specification {0:?}")]
    Invalid(String),
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The identity a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Parses /etc/passwd content; malformed lines are skipped, as libc does.
pub fn parse_passwd(content: &str) -> Vec<PasswdEntry> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// Parses /etc/group content; malformed lines are skipped.
pub fn parse_group(content: &str) -> Vec<GroupEntry> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` ("name", "uid", "name:group", "uid:gid", ...) against parsed files.
pub fn resolve(
    spec: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() || group_part == Some("") {
        return Err(UserError::Invalid(spec.to_string()));
    }
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd
            .iter()
            .find(|p| p.uid == uid)
            .cloned()
            .or(Some(PasswdEntry {
                name: String::new(),
                uid,
                gid: 0,
                home: "/".into(),
            })),
        Err(_) => passwd.iter().find(|p| p.name == user_part).cloned(),
    }
    .ok_or_else(|| UserError::UnknownUser(user_part.to_string()))?;

    let gid = match group_part {
        None => entry.gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?
                    .gid
            }
        },
    };
    let mut additional_gids = Vec::new();
    if !entry.name.is_empty() {
        for g in groups {
            if g.members.contains(&entry.name) && !additional_gids.contains(&g.gid) {
                additional_gids.push(g.gid);
            }
        }
    }
    let home = if entry.home.is_empty() {
        "/".to_string()
    } else {
        entry.home
    };
    Ok(ExecUser {
        uid: entry.uid,
        gid,
        additional_gids,
        home,
    })
}

/// The home directory of `uid` per the passwd content, "/" when it has no entry.
pub fn home_of(uid: u32, passwd: &[PasswdEntry]) -> String {
    passwd
        .iter()
        .find(|p| p.uid == uid && !p.home.is_empty())
        .map(|p| p.home.clone())
        .unwrap_or_else(|| "/".to_string())
}

/// Reads a container's passwd and group files (missing files count as empty).
pub fn read_files(rootfs: &Path) -> Result<(Vec<PasswdEntry>, Vec<GroupEntry>), UserError> {
    let read = |rel: &str| -> Result<String, UserError> {
        // The files belong to the container: a symlink among them resolves inside its root.
        let path = crate::rootpath::resolve_in_root(rootfs, rel);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(UserError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    };
    Ok((
        parse_passwd(&read("etc/passwd")?),
        parse_group(&read("etc/group")?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        nohome:x:1000:1000::\n";
    const GROUP: &str = "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\n\
        audio:x:29:www-data,daemon\nvideo:x:44: www-data \nstaff:x:50:\nbad\n";

    fn r(spec: &str) -> Result<ExecUser, UserError> {
        resolve(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn parses_and_skips_malformed_lines() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 5);
        assert_eq!(p[2].name, "www-data");
        assert_eq!(p[2].home, "/var/www");
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 6);
        assert_eq!(g[4].members, vec!["www-data"]);
    }

    #[test]
    fn name_gives_primary_group_home_and_memberships() {
        let u = r("www-data").unwrap();
        assert_eq!(
            u,
            ExecUser {
                uid: 33,
                gid: 33,
                additional_gids: vec![29, 44],
                home: "/var/www".into()
            }
        );
    }

    #[test]
    fn numeric_uid_with_and_without_entry() {
        assert_eq!(r("1").unwrap().home, "/usr/sbin");
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert!(u.additional_gids.is_empty());
    }

    #[test]
    fn explicit_group_by_name_or_number() {
        let u = r("daemon:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1, 50));
        assert_eq!(u.additional_gids, vec![29]);
        let u = r("4242:4343").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 4343));
        assert_eq!(r("nohome").unwrap().home, "/");
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            r("alice").unwrap_err().to_string(),
            "unable to find user alice: no matching entries in passwd file"
        );
        assert!(matches!(r("root:nogroup"), Err(UserError::UnknownGroup(g)) if g == "nogroup"));
        assert!(matches!(r(":0"), Err(UserError::Invalid(_))));
        assert!(matches!(r("root:"), Err(UserError::Invalid(_))));
    }

    #[test]
    fn files_are_read_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib")).unwrap();
        std::fs::write(d.path().join("usr/lib/passwd"), "app:x:7:8::/app:/bin/sh\n").unwrap();
        // An absolute link must resolve in the container's root, not the guest's.
        std::os::unix::fs::symlink("/usr/lib/passwd", d.path().join("etc/passwd")).unwrap();
        let (p, g) = read_files(d.path()).unwrap();
        assert_eq!(p[0].name, "app");
        assert!(g.is_empty(), "a missing group file reads as empty");
    }

    #[test]
    fn home_lookup() {
        let p = parse_passwd(PASSWD);
        assert_eq!(home_of(0, &p), "/root");
        assert_eq!(home_of(7, &p), "/");
    }
}
