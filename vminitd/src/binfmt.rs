//! binfmt_misc handlers for another architecture's executables: how Rosetta (a virtio-fs
//! share on Apple silicon) runs x86_64 programs in the arm64 guest, and equally how a
//! qemu-user binary would. The handler is registered with flag `F`, so the kernel opens the
//! interpreter at registration and every container can use it without having it in its own
//! root filesystem.

use std::io::Write;
use std::path::Path;

/// Where binfmt_misc is mounted (by [`register`] when it is not yet).
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Why a handler could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The interpreter does not exist.
    #[error("interpreter {0} not found")]
    NotFound(String),
    /// Mounting binfmt_misc or writing its register file failed.
    #[error("{op}")]
    Io {
        /// What was being done.
        op: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// The ELF header bytes that identify a static or dynamic executable of `arch`, and the mask
/// of the bits compared (the OS ABI byte and the object type's low bit are ignored, as the
/// common qemu-user and Rosetta registrations do).
fn elf_magic(arch: &str) -> Option<([u8; 20], [u8; 20])> {
    let machine: u8 = match arch {
        "x86_64" => 0x3e,
        "aarch64" => 0xb7,
        _ => return None,
    };
    let magic = [
        0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, machine, 0,
    ];
    let mask = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xfe, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xfe, 0xff, 0xff, 0xff,
    ];
    Some((magic, mask))
}

/// The architecture vminitd (and so the guest kernel) runs as.
fn native_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    }
}

/// The line written to binfmt_misc's `register` file: `:name:M::magic:mask:interpreter:F`,
/// every magic and mask byte as a `\xHH` escape (a raw `:` would end the field).
pub fn register_line(name: &str, arch: &str, interpreter: &str) -> Result<String, BinfmtError> {
    if name.is_empty()
        || name.len() > 31
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(BinfmtError::Invalid(format!(
            "invalid handler name {name:?}: 1 to 31 of [A-Za-z0-9_-]"
        )));
    }
    if arch == native_arch() {
        return Err(BinfmtError::Invalid(format!(
            "{arch} is the guest's own architecture: a handler for it would take over every program"
        )));
    }
    let (magic, mask) = elf_magic(arch).ok_or_else(|| {
        BinfmtError::Invalid(format!("unknown architecture {arch:?} (x86_64 or aarch64)"))
    })?;
    if !interpreter.starts_with('/')
        || interpreter.len() > 127
        || interpreter
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(BinfmtError::Invalid(format!(
            "invalid interpreter {interpreter:?}: an absolute path without ':' or whitespace, at most 127 bytes"
        )));
    }
    let hex = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("\\x{b:02x}"))
            .collect::<String>()
    };
    Ok(format!(
        ":{name}:M::{}:{}:{interpreter}:F",
        hex(&magic),
        hex(&mask)
    ))
}

/// Registers `interpreter` for `arch`'s executables under `name`, mounting binfmt_misc first
/// when needed. An existing handler of that name is replaced.
pub fn register(name: &str, arch: &str, interpreter: &str) -> Result<(), BinfmtError> {
    let line = register_line(name, arch, interpreter)?;
    if !Path::new(interpreter).is_file() {
        return Err(BinfmtError::NotFound(interpreter.to_owned()));
    }
    let dir = Path::new(BINFMT_DIR);
    if !dir.join("register").exists() {
        nix::mount::mount(
            Some("binfmt_misc"),
            dir,
            Some("binfmt_misc"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| BinfmtError::Io {
            op: format!("mounting binfmt_misc at {BINFMT_DIR}"),
            source: e.into(),
        })?;
    }
    let existing = dir.join(name);
    if existing.exists() {
        // Writing -1 to a handler's file removes it.
        std::fs::write(&existing, b"-1").map_err(|source| BinfmtError::Io {
            op: format!("removing the previous {name} handler"),
            source,
        })?;
    }
    let mut register = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("register"))
        .map_err(|source| BinfmtError::Io {
            op: format!("opening {BINFMT_DIR}/register"),
            source,
        })?;
    register
        .write_all(line.as_bytes())
        .map_err(|source| BinfmtError::Io {
            op: format!("registering {interpreter} for {arch} executables"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign() -> &'static str {
        if native_arch() == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        }
    }

    #[test]
    fn the_register_line_escapes_every_byte_and_fixes_the_interpreter() {
        let line = register_line("rosetta", "x86_64", "/run/rosetta/rosetta");
        if native_arch() == "x86_64" {
            assert!(line.is_err());
            return;
        }
        assert_eq!(
            line.unwrap(),
            ":rosetta:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x3e\\x00:\
             \\xff\\xff\\xff\\xff\\xff\\xfe\\xfe\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/run/rosetta/rosetta:F"
        );
    }

    #[test]
    fn bad_requests_are_refused_before_touching_the_kernel() {
        let f = foreign();
        assert!(register_line("ok-name_1", f, "/q/interp").is_ok());
        for (name, arch, interp) in [
            ("", f, "/q/i"),
            ("a/b", f, "/q/i"),
            ("n", native_arch(), "/q/i"),
            ("n", "riscv64", "/q/i"),
            ("n", f, "relative"),
            ("n", f, "/a:b"),
            ("n", f, "/a b"),
        ] {
            let err = register_line(name, arch, interp).unwrap_err().to_string();
            assert!(!err.contains('\n') && !err.ends_with('.'), "{err}");
        }
        assert!(matches!(
            register("n", f, "/no/such/interpreter"),
            Err(BinfmtError::NotFound(_))
        ));
    }
}
