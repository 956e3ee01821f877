//! Choosing the accelerator: KVM only when it really works, TCG otherwise.
//!
//! KVM runs only guests of the host's own architecture: another architecture's guest always
//! gets TCG. For the host's own, `/dev/kvm` existing is not enough: on some hosts (nested
//! virtualisation without the CPU flags, for one) a KVM guest hangs. So KVM is chosen only
//! when the CPU advertises vmx or svm (x86; arm64 has no such flag), `/dev/kvm` opens, and a probe boot of the real guest kernel under KVM (no initrd, so it
//! panics at once and `panic=-1` plus `-no-reboot` ends QEMU) finishes within a few seconds.
//! The verdict is cached per kernel and QEMU binary, in memory and in the user's cache
//! directory, keyed also by the host's boot id so a host change is re-probed.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::machine::Machine;

/// How long a probe boot may take before KVM is declared broken. A working KVM boots this
/// kernel to its panic in well under a second.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// The environment variable that forces the accelerator (`kvm` or `tcg`), skipping detection.
pub const ACCEL_ENV: &str = "CONTAINER_ACCEL";

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's binary translator: slow, works everywhere.
    Tcg,
}

impl Accel {
    /// The name QEMU's `-accel` takes.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The chosen accelerator and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// What to run with.
    pub accel: Accel,
    /// Why, in words for a log line.
    pub reason: String,
}

fn tcg(reason: impl Into<String>) -> AccelChoice {
    AccelChoice {
        accel: Accel::Tcg,
        reason: reason.into(),
    }
}

static MEMORY_CACHE: Mutex<Option<HashMap<String, Accel>>> = Mutex::new(None);

/// Chooses the accelerator for booting `kernel` on `machine` with `qemu`. Never fails: any
/// doubt means TCG.
pub async fn detect(machine: &Machine, qemu: &Path, kernel: &Path) -> AccelChoice {
    detect_with_cache(machine, qemu, kernel, default_cache_dir().as_deref()).await
}

/// [`detect`] with an explicit on-disk cache directory (`None`: memory only).
pub async fn detect_with_cache(
    machine: &Machine,
    qemu: &Path,
    kernel: &Path,
    cache_dir: Option<&Path>,
) -> AccelChoice {
    if !machine.native() {
        return tcg(format!(
            "the guest is {} and the host {}: only tcg runs another architecture",
            machine.arch,
            vmm::Arch::host()
        ));
    }
    match std::env::var(ACCEL_ENV).as_deref() {
        Ok("kvm") => {
            return AccelChoice {
                accel: Accel::Kvm,
                reason: format!("${ACCEL_ENV}=kvm"),
            };
        }
        Ok("tcg") => return tcg(format!("${ACCEL_ENV}=tcg")),
        _ => {}
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !machine.kvm_cpu_flags.is_empty() && !cpu_has_virtualization(&cpuinfo, machine) {
        return tcg(format!(
            "the cpu advertises none of {}",
            machine.kvm_cpu_flags.join(", ")
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return tcg(format!("/dev/kvm cannot be opened: {e}"));
    }
    let key = cache_key(qemu, kernel);
    let cached = MEMORY_CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(&key).copied()))
        .or_else(|| cache_dir.and_then(|d| read_disk_cache(d, &key)));
    if let Some(accel) = cached {
        return AccelChoice {
            accel,
            reason: "cached result of an earlier probe boot".into(),
        };
    }
    let probe = probe_kvm(machine, qemu, kernel, PROBE_TIMEOUT).await;
    let accel = if probe.works { Accel::Kvm } else { Accel::Tcg };
    if let Ok(mut cache) = MEMORY_CACHE.lock() {
        cache
            .get_or_insert_with(HashMap::new)
            .insert(key.clone(), accel);
    }
    if let Some(dir) = cache_dir {
        write_disk_cache(dir, &key, accel);
    }
    AccelChoice {
        accel,
        reason: probe.detail,
    }
}

/// Whether the cpu flags in `/proc/cpuinfo` text include one of `machine`'s hardware
/// virtualisation flags.
pub fn cpu_has_virtualization(cpuinfo: &str, machine: &Machine) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace())
        .any(|f| machine.kvm_cpu_flags.contains(&f))
}

/// The outcome of one KVM probe boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The guest kernel ran to its panic and QEMU exited in time.
    pub works: bool,
    /// What happened, for a log line.
    pub detail: String,
}

/// Boots `kernel` on `machine` under KVM with no initrd and `panic=-1`; KVM works if QEMU
/// exits cleanly within `timeout`. The probe QEMU is killed and reaped whatever happens.
pub async fn probe_kvm(machine: &Machine, qemu: &Path, kernel: &Path, timeout: Duration) -> Probe {
    let start = Instant::now();
    let mut cmd = tokio::process::Command::new(qemu);
    cmd.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args([
        "-M",
        machine.board,
        "-accel",
        "kvm",
        "-cpu",
        "max",
        "-m",
        "128M",
    ])
    .args(["-serial", "null", "-kernel"])
    .arg(kernel)
    .args([
        "-append",
        &format!("console={} quiet panic=-1 reboot=t", machine.console),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Probe {
                works: false,
                detail: format!("kvm probe could not start {}: {e}", qemu.display()),
            };
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Probe {
            works: true,
            detail: format!("kvm probe boot finished in {:?}", start.elapsed()),
        },
        Ok(Ok(status)) => Probe {
            works: false,
            detail: format!("kvm probe boot failed ({status})"),
        },
        Ok(Err(e)) => Probe {
            works: false,
            detail: format!("kvm probe boot could not be waited for: {e}"),
        },
        Err(_) => {
            // The guest hangs under KVM: kill the probe and reap it before answering.
            let _ = child.kill().await;
            Probe {
                works: false,
                detail: format!("kvm probe boot did not finish within {timeout:?}"),
            }
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| Path::new(&h).join(".cache"))
        })?;
    Some(base.join("container/accel-probe"))
}

fn cache_key(qemu: &Path, kernel: &Path) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in [qemu, kernel] {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        path.hash(&mut hasher);
        if let Ok(meta) = std::fs::metadata(&path) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn read_disk_cache(dir: &Path, key: &str) -> Option<Accel> {
    match std::fs::read_to_string(dir.join(key)).ok()?.trim() {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

// A cache: failing to write it only costs a probe next time, so errors are ignored.
fn write_disk_cache(dir: &Path, key: &str, accel: Accel) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    if std::fs::write(&tmp, accel.qemu_name()).is_ok()
        && std::fs::rename(&tmp, dir.join(key)).is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_flags_are_read_from_flags_lines_only() {
        use crate::machine::X86_64;
        assert!(cpu_has_virtualization(
            "processor : 0\nflags\t\t: fpu vme vmx sse\n",
            &X86_64
        ));
        assert!(cpu_has_virtualization("flags : fpu svm\n", &X86_64));
        assert!(!cpu_has_virtualization(
            "flags : fpu vme sse vmxe\nmodel name : vmx\n",
            &X86_64
        ));
    }

    #[tokio::test]
    async fn another_architectures_guest_gets_tcg_whatever_is_asked() {
        let foreign = if cfg!(target_arch = "aarch64") {
            &crate::machine::X86_64
        } else {
            &crate::machine::AARCH64
        };
        let choice = detect_with_cache(
            foreign,
            Path::new("/nonexistent/qemu"),
            Path::new("/k"),
            None,
        )
        .await;
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(
            choice.reason.contains("only tcg runs another architecture"),
            "{}",
            choice.reason
        );
    }

    #[test]
    fn disk_cache_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_disk_cache(dir.path(), "k"), None);
        write_disk_cache(dir.path(), "k", Accel::Kvm);
        assert_eq!(read_disk_cache(dir.path(), "k"), Some(Accel::Kvm));
        write_disk_cache(dir.path(), "k", Accel::Tcg);
        assert_eq!(read_disk_cache(dir.path(), "k"), Some(Accel::Tcg));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
