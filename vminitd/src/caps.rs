//! Linux capabilities: names to numbers, and applying the five sets to the calling process.
//!
//! Done with raw capset(2)/prctl(2) rather than a crate: it is a few calls and vminitd must
//! control their exact order relative to setuid and seccomp (see `setup`).

use oci_spec::runtime::{Capabilities, Capability};

/// Errors of capability handling.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("{op} failed")]
    Sys {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The highest capability number this build knows (CAP_CHECKPOINT_RESTORE).
pub const CAP_LAST: u32 = 40;

/// The kernel's number for a capability.
pub fn number(cap: &Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// A capability set as a bit mask (bit n = capability n).
pub fn mask(caps: Option<&Capabilities>) -> u64 {
    caps.map(|c| c.iter().fold(0u64, |m, c| m | (1u64 << number(c))))
        .unwrap_or(0)
}

/// The five sets a process ends up with, as masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    /// Every capability in every set: what a process without a capabilities entry keeps.
    pub fn all() -> Self {
        let all = (1u64 << (CAP_LAST + 1)) - 1;
        CapSets {
            bounding: all,
            effective: all,
            permitted: all,
            inheritable: 0,
            ambient: 0,
        }
    }

    /// From the spec's capabilities (missing sets are empty, as runc treats them).
    pub fn from_spec(c: &oci_spec::runtime::LinuxCapabilities) -> Self {
        CapSets {
            bounding: mask(c.bounding().as_ref()),
            effective: mask(c.effective().as_ref()),
            permitted: mask(c.permitted().as_ref()),
            inheritable: mask(c.inheritable().as_ref()),
            ambient: mask(c.ambient().as_ref()),
        }
    }
}

fn check(op: &'static str, rc: libc::c_long) -> Result<(), CapsError> {
    if rc < 0 {
        Err(CapsError::Sys {
            op,
            source: std::io::Error::last_os_error(),
        })
    } else {
        Ok(())
    }
}

/// Drops every capability not in `bounding` from the bounding set (needs CAP_SETPCAP).
pub fn drop_bounding(bounding: u64) -> Result<(), CapsError> {
    for cap in 0..=CAP_LAST {
        if bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            // EINVAL: the running kernel does not know this capability; nothing to drop.
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                check("prctl(PR_CAPBSET_DROP)", rc as libc::c_long)?;
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets the effective, permitted and inheritable sets, then raises the ambient set.
pub fn apply(sets: &CapSets) -> Result<(), CapsError> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: sets.effective as u32,
            permitted: sets.permitted as u32,
            inheritable: sets.inheritable as u32,
        },
        CapData {
            effective: (sets.effective >> 32) as u32,
            permitted: (sets.permitted >> 32) as u32,
            inheritable: (sets.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and two data structs laid out as the kernel's v3 ABI expects; both live
    // for the duration of the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    check("capset", rc)?;
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    check("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", rc as libc::c_long)?;
    for cap in 0..=CAP_LAST {
        if sets.ambient & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            check("prctl(PR_CAP_AMBIENT_RAISE)", rc as libc::c_long)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_set_has_the_expected_mask() {
        let json = r#"["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD",
            "CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]"#;
        let caps: Capabilities = serde_json::from_str(json).unwrap();
        // The value the kernel prints as CapEff for a default Docker container.
        assert_eq!(mask(Some(&caps)), 0x00000000a80425fb);
        assert_eq!(mask(None), 0);
        assert_eq!(CapSets::all().bounding, 0x1ff_ffff_ffff);
    }
}
