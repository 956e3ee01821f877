//! Which guest runs a container: the architecture of its VM (kernel, initramfs, machine) and
//! whether Rosetta translates for it, decided from the image's platform, `--rosetta`, the
//! `build.rosetta` property and what the host can do.
//!
//! Each architecture runs in a VM of its own architecture: an arm64 image on an x86_64 host
//! boots the arm64 guest under `qemu-system-aarch64` (docs/multiarch.md has the figures that
//! chose this over qemu-user inside an x86_64 guest). The one exception is Apple silicon
//! with Rosetta: amd64 images run in the arm64 guest, their programs translated by Rosetta
//! (Virtualization.framework cannot run an x86_64 VM at all).
//!
//! Pure: the caller says what the host offers ([`HostGuests`]), so every rule is tested here
//! on any machine.

use crate::kernel::{KernelError, guest_arch};

/// What the host offers for running guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostGuests {
    /// The host's own architecture.
    pub host: vmm::Arch,
    /// Rosetta is installed and the VMM can share it (Apple silicon, VZ).
    pub rosetta_available: bool,
    /// The `build.rosetta` property: amd64 images use Rosetta where it is available, instead
    /// of an emulated x86_64 VM.
    pub prefer_rosetta: bool,
}

impl HostGuests {
    /// This host, with the `build.rosetta` property's value.
    pub fn this_host(prefer_rosetta: bool) -> HostGuests {
        HostGuests {
            host: vmm::Arch::host(),
            rosetta_available: crate::platform::rosetta_available(),
            prefer_rosetta,
        }
    }
}

/// The guest a container boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestChoice {
    /// The VM's architecture.
    pub arch: vmm::Arch,
    /// Rosetta is shared into it and registered for x86_64 programs.
    pub rosetta: bool,
}

/// Chooses the guest for an image of `platform`; `rosetta` is the `--rosetta` flag.
pub fn choose(
    platform: &oci::Platform,
    rosetta: bool,
    host: &HostGuests,
) -> Result<GuestChoice, KernelError> {
    let image = guest_arch(platform)?;
    if rosetta && !host.rosetta_available {
        return Err(KernelError::Invalid(
            "--rosetta needs Rosetta, which only Apple silicon Macs have (container runs VMs \
             through Virtualization.framework there); on this host images of another \
             architecture run in a VM of that architecture without it"
                .to_owned(),
        ));
    }
    let translated = host.rosetta_available
        && host.host == vmm::Arch::Aarch64
        && image == vmm::Arch::X86_64
        && host.prefer_rosetta;
    if rosetta || translated {
        return Ok(GuestChoice {
            arch: vmm::Arch::Aarch64,
            rosetta: true,
        });
    }
    Ok(GuestChoice {
        arch: image,
        rosetta: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> oci::Platform {
        s.parse().unwrap()
    }

    const LINUX_X86: HostGuests = HostGuests {
        host: vmm::Arch::X86_64,
        rosetta_available: false,
        prefer_rosetta: true,
    };
    const MAC: HostGuests = HostGuests {
        host: vmm::Arch::Aarch64,
        rosetta_available: true,
        prefer_rosetta: true,
    };

    fn plain(arch: vmm::Arch) -> GuestChoice {
        GuestChoice {
            arch,
            rosetta: false,
        }
    }

    #[test]
    fn each_architecture_runs_in_its_own_guest_without_rosetta() {
        for host in [LINUX_X86, MAC_WITHOUT_ROSETTA] {
            assert_eq!(
                choose(&p("linux/arm64"), false, &host).unwrap(),
                plain(vmm::Arch::Aarch64)
            );
            assert_eq!(
                choose(&p("linux/arm64/v8"), false, &host).unwrap(),
                plain(vmm::Arch::Aarch64)
            );
            assert_eq!(
                choose(&p("linux/amd64"), false, &host).unwrap(),
                plain(vmm::Arch::X86_64)
            );
        }
    }

    const MAC_WITHOUT_ROSETTA: HostGuests = HostGuests {
        host: vmm::Arch::Aarch64,
        rosetta_available: false,
        prefer_rosetta: true,
    };

    #[test]
    fn amd64_on_apple_silicon_runs_through_rosetta_unless_build_rosetta_is_off() {
        let rosetta = GuestChoice {
            arch: vmm::Arch::Aarch64,
            rosetta: true,
        };
        assert_eq!(choose(&p("linux/amd64"), false, &MAC).unwrap(), rosetta);
        let off = HostGuests {
            prefer_rosetta: false,
            ..MAC
        };
        assert_eq!(
            choose(&p("linux/amd64"), false, &off).unwrap(),
            plain(vmm::Arch::X86_64)
        );
        // Native images need no translation, but `--rosetta` asks for it anyway (x86_64
        // programs inside an arm64 image).
        assert_eq!(
            choose(&p("linux/arm64"), false, &MAC).unwrap(),
            plain(vmm::Arch::Aarch64)
        );
        assert_eq!(choose(&p("linux/arm64"), true, &off).unwrap(), rosetta);
    }

    #[test]
    fn rosetta_without_rosetta_and_foreign_systems_are_refused_in_one_line() {
        let err = choose(&p("linux/arm64"), true, &LINUX_X86)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--rosetta needs Rosetta, which only Apple silicon Macs have"),
            "{err}"
        );
        assert!(!err.contains('\n') && !err.ends_with('.'), "{err}");
        assert_eq!(
            choose(&p("linux/riscv64"), false, &LINUX_X86)
                .unwrap_err()
                .to_string(),
            "images for linux/riscv64 cannot run: there is no riscv64 guest (amd64 and arm64 have one)"
        );
        assert_eq!(
            choose(&p("windows/amd64"), false, &LINUX_X86)
                .unwrap_err()
                .to_string(),
            "images for windows/amd64 cannot run: only linux images run in the guest"
        );
    }
}
