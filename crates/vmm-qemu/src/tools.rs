//! Finding the programs a VM needs: QEMU itself and its vhost-user helpers.

use std::path::{Path, PathBuf};

use vmm::VmError;

/// A program the backend runs, and where to look for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The executable's file name.
    pub program: &'static str,
    /// The environment variable that names the executable's full path, overriding the search.
    pub env: &'static str,
}

/// The QEMU system emulator for x86_64 guests. `$CONTAINER_QEMU` names the host
/// architecture's emulator; the other one has its own variable.
pub const QEMU_X86_64: Tool = Tool {
    program: "qemu-system-x86_64",
    env: if cfg!(target_arch = "x86_64") {
        "CONTAINER_QEMU"
    } else {
        "CONTAINER_QEMU_X86_64"
    },
};
/// The QEMU system emulator for aarch64 guests (Debian's `qemu-system-arm` package).
pub const QEMU_AARCH64: Tool = Tool {
    program: "qemu-system-aarch64",
    env: if cfg!(target_arch = "aarch64") {
        "CONTAINER_QEMU"
    } else {
        "CONTAINER_QEMU_AARCH64"
    },
};
/// The QEMU system emulator for the host's architecture.
pub const QEMU: Tool = if cfg!(target_arch = "aarch64") {
    QEMU_AARCH64
} else {
    QEMU_X86_64
};
/// The vhost-user vsock device (rust-vmm's vhost-device-vsock), in hybrid Unix-socket mode.
pub const VHOST_VSOCK: Tool = Tool {
    program: "vhost-device-vsock",
    env: "CONTAINER_VHOST_VSOCK",
};
/// The vhost-user virtio-fs daemon.
pub const VIRTIOFSD: Tool = Tool {
    program: "virtiofsd",
    env: "CONTAINER_VIRTIOFSD",
};

/// Where `cargo xtask deps` installs helpers that distributions do not package.
pub fn dev_tools_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(Path::new(&home).join(".cache/container-dev/tools/bin"))
}

/// Finds `tool`: the path in its environment variable if set, else the first executable of
/// that name on `$PATH`, else the one in [`dev_tools_dir`].
pub fn find(tool: Tool) -> Result<PathBuf, VmError> {
    if let Some(path) = std::env::var_os(tool.env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(VmError::MissingTool {
                program: tool.program.into(),
                hint: format!(
                    "${} names {}, which is not an executable file",
                    tool.env,
                    path.display()
                ),
            })
        };
    }
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path_dirs).chain(dev_tools_dir());
    for dir in candidates {
        let path = dir.join(tool.program);
        if is_executable(&path) {
            return Ok(path);
        }
    }
    Err(VmError::MissingTool {
        program: tool.program.into(),
        hint: format!(
            "not on $PATH nor in {}; install it (cargo xtask deps) or set ${}",
            dev_tools_dir().map_or_else(
                || "~/.cache/container-dev/tools/bin".into(),
                |d| d.display().to_string()
            ),
            tool.env
        ),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_itself_and_the_override() {
        let tool = Tool {
            program: "surely-not-installed-vmm-tool",
            env: "CONTAINER_TEST_SURELY_UNSET_TOOL",
        };
        let err = find(tool).unwrap_err().to_string();
        assert!(
            err.starts_with("surely-not-installed-vmm-tool not found: not on $PATH"),
            "{err}"
        );
        assert!(err.contains("$CONTAINER_TEST_SURELY_UNSET_TOOL"), "{err}");
    }

    #[test]
    fn qemu_is_found_on_this_host() {
        let path = find(QEMU).unwrap();
        assert!(path.ends_with(QEMU.program), "{}", path.display());
    }
}
