//! Filesystem RPCs in the guest's own mount namespace: mount (with block devices found by
//! serial), umount, mkdir, atomic writes, stat, tar copy in and out, resolv.conf and hosts.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use crate::mountopt;

/// Errors of filesystem operations.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("path {0:?} is not absolute")]
    NotAbsolute(String),
    #[error("no block device with serial {0:?}")]
    NoSuchDisk(String),
    #[error("{0:?} does not exist")]
    NotFound(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Options(#[from] mountopt::MountOptError),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| {
        if source.kind() == io::ErrorKind::NotFound && what != "mounting" {
            FsError::NotFound(path.display().to_string())
        } else {
            FsError::Io {
                what,
                path: path.display().to_string(),
                source,
            }
        }
    }
}

/// Rejects relative paths.
pub fn absolute(p: &str) -> Result<&Path, FsError> {
    if p.starts_with('/') {
        Ok(Path::new(p))
    } else {
        Err(FsError::NotAbsolute(p.to_string()))
    }
}

/// The /dev path of the virtio block device whose serial is `serial`, per `sys_block`
/// (normally /sys/block).
pub fn disk_by_serial(sys_block: &Path, serial: &str) -> Option<PathBuf> {
    let entries = fs::read_dir(sys_block).ok()?;
    for e in entries.flatten() {
        if fs::read_to_string(e.path().join("serial")).is_ok_and(|s| s.trim() == serial) {
            return Some(Path::new("/dev").join(e.file_name()));
        }
    }
    None
}

/// mount(2) with mount(8)-style options.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    options: &[String],
    create_target: bool,
) -> Result<(), FsError> {
    let target = absolute(target)?;
    let opts = mountopt::parse(options)?;
    let source = match source.strip_prefix("block-serial:") {
        Some(serial) => {
            // Disks attached at boot may still be probing; give them a moment.
            let mut found = None;
            for _ in 0..50 {
                found = disk_by_serial(Path::new("/sys/block"), serial);
                if found.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            found
                .ok_or_else(|| FsError::NoSuchDisk(serial.to_string()))?
                .display()
                .to_string()
        }
        None => source.to_string(),
    };
    if create_target {
        fs::create_dir_all(target).map_err(io_err("creating", target))?;
    }
    let fstype = (!fstype.is_empty() && fstype != "bind").then_some(fstype);
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let mount_err = |e: nix::Error| FsError::Io {
        what: "mounting",
        path: format!("{source} on {}", target.display()),
        source: e.into(),
    };
    if opts.is_bind() {
        nix::mount::mount(
            Some(source.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC),
            None::<&str>,
        )
        .map_err(mount_err)?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            nix::mount::mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
                None::<&str>,
            )
            .map_err(mount_err)?;
        }
    } else {
        nix::mount::mount(Some(source.as_str()), target, fstype, opts.flags, data)
            .map_err(mount_err)?;
    }
    if !opts.propagation.is_empty() {
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            opts.propagation,
            None::<&str>,
        )
        .map_err(mount_err)?;
    }
    Ok(())
}

/// umount2(2).
pub fn umount(target: &str, lazy: bool) -> Result<(), FsError> {
    let target = absolute(target)?;
    let flags = if lazy {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    nix::mount::umount2(target, flags).map_err(|e| FsError::Io {
        what: "unmounting",
        path: target.display().to_string(),
        source: e.into(),
    })
}

/// mkdir, optionally with parents, then mode and owner of the last component.
pub fn mkdir(path: &str, mode: u32, parents: bool, uid: u32, gid: u32) -> Result<(), FsError> {
    let path = absolute(path)?;
    let mode = if mode == 0 { 0o755 } else { mode & 0o7777 };
    if parents {
        fs::create_dir_all(path).map_err(io_err("creating", path))?;
    } else {
        fs::create_dir(path).map_err(io_err("creating", path))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err("chown", path))?;
    Ok(())
}

/// Writes a whole file atomically (temp file, fsync, rename, fsync the directory), or appends.
pub fn write_file(
    path: &str,
    data: &[u8],
    mode: u32,
    append: bool,
    create_parents: bool,
) -> Result<(), FsError> {
    let path = absolute(path)?;
    let mode = if mode == 0 { 0o644 } else { mode & 0o7777 };
    let dir = path
        .parent()
        .ok_or_else(|| FsError::Invalid("cannot write to /".into()))?;
    if create_parents {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    if append {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .open(path)
            .map_err(io_err("opening", path))?;
        f.write_all(data).map_err(io_err("writing", path))?;
        return f.sync_all().map_err(io_err("syncing", path));
    }
    let name = path
        .file_name()
        .ok_or_else(|| FsError::Invalid(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> Result<(), FsError> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        f.write_all(data).map_err(io_err("writing", &tmp))?;
        // The mode given wins over the umask.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("renaming", path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", dir))
    };
    let r = write();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// lstat(2) of a path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatInfo {
    pub exists: bool,
    pub mode: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub link_target: String,
}

/// lstat(2); a missing path is `exists: false`, not an error.
pub fn stat(path: &str) -> Result<StatInfo, FsError> {
    let p = absolute(path)?;
    let md = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StatInfo::default()),
        Err(e) => return Err(io_err("stat", p)(e)),
    };
    let link_target = if md.file_type().is_symlink() {
        fs::read_link(p)
            .map(|t| t.display().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(StatInfo {
        exists: true,
        mode: md.mode(),
        size: md.size(),
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
        link_target,
    })
}

/// resolv.conf content.
pub fn render_resolv_conf(nameservers: &[String], search: &[String], options: &[String]) -> String {
    let mut s = String::new();
    for n in nameservers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

/// /etc/hosts content: the localhost lines, then the entries in order.
pub fn render_hosts(entries: &[(String, Vec<String>)]) -> Result<String, FsError> {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (ip, names) in entries {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(FsError::Invalid(format!(
                "hosts entry address {ip:?} is not an ip address"
            )));
        }
        if names.is_empty()
            || names
                .iter()
                .any(|n| n.is_empty() || n.contains(char::is_whitespace))
        {
            return Err(FsError::Invalid(format!(
                "hosts entry for {ip} has a bad name list"
            )));
        }
        s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_is_atomic_and_honours_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/dir/f.txt");
        let ps = p.to_str().unwrap();
        assert!(
            write_file(ps, b"x", 0, false, false).is_err(),
            "parents are not created unless asked"
        );
        write_file(ps, b"hello", 0o600, false, true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_file(ps, b" world", 0, true, false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello world");
        write_file(ps, b"new", 0, false, false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
        assert!(matches!(
            write_file("rel/path", b"", 0, false, false),
            Err(FsError::NotAbsolute(_))
        ));
    }

    #[test]
    fn stat_and_mkdir() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b");
        mkdir(dir.to_str().unwrap(), 0o700, true, 0, 0).unwrap();
        let s = stat(dir.to_str().unwrap()).unwrap();
        assert!(s.exists);
        assert_eq!(s.mode & 0o170777, 0o040700);
        assert!(
            !stat(d.path().join("none").to_str().unwrap())
                .unwrap()
                .exists
        );
        std::os::unix::fs::symlink("a/b", d.path().join("ln")).unwrap();
        assert_eq!(
            stat(d.path().join("ln").to_str().unwrap())
                .unwrap()
                .link_target,
            "a/b"
        );
        assert!(
            mkdir(dir.to_str().unwrap(), 0, false, 0, 0).is_err(),
            "exists without parents"
        );
    }

    #[test]
    fn disks_are_found_by_serial() {
        let d = tempfile::tempdir().unwrap();
        for (dev, serial) in [("vda", "rootfs-abc\n"), ("vdb", "vol-1")] {
            fs::create_dir_all(d.path().join(dev)).unwrap();
            fs::write(d.path().join(dev).join("serial"), serial).unwrap();
        }
        fs::create_dir_all(d.path().join("loop0")).unwrap();
        assert_eq!(
            disk_by_serial(d.path(), "rootfs-abc"),
            Some(PathBuf::from("/dev/vda"))
        );
        assert_eq!(
            disk_by_serial(d.path(), "vol-1"),
            Some(PathBuf::from("/dev/vdb"))
        );
        assert_eq!(disk_by_serial(d.path(), "vol-2"), None);
    }

    #[test]
    fn dns_and_hosts_rendering() {
        let r = render_resolv_conf(
            &["192.168.64.1".into(), "fd00::1".into()],
            &["example.com".into(), "local".into()],
            &["ndots:2".into()],
        );
        assert_eq!(
            r,
            "nameserver 192.168.64.1\nnameserver fd00::1\nsearch example.com local\noptions ndots:2\n"
        );
        assert_eq!(render_resolv_conf(&[], &[], &[]), "");
        let h = render_hosts(&[(
            "192.168.64.2".into(),
            vec!["web".into(), "web.local".into()],
        )])
        .unwrap();
        assert!(h.ends_with("192.168.64.2\tweb web.local\n"));
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(render_hosts(&[("not-an-ip".into(), vec!["x".into()])]).is_err());
        assert!(render_hosts(&[("10.0.0.1".into(), vec!["a b".into()])]).is_err());
    }
}
