//! The QEMU command line for a [`VmConfig`]: a pure function, so it can be snapshot-tested.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use vmm::{ConfigError, NicAttachment, Protocol, VmConfig};

use crate::accel::Accel;
use crate::machine::{self, Machine};

pub use vmm::cmdline::COMMON_CMDLINE;

/// The kernel command line words of `machine`, before the caller's own: the console, the
/// common words, the machine's timer words (the shared rule in [`vmm::cmdline`]).
pub fn base_cmdline(machine: &Machine) -> Vec<String> {
    vmm::cmdline::base_cmdline(machine.console, machine.cmdline)
}

/// Everything besides the config that the command line names.
#[derive(Debug, Clone)]
pub struct Launch {
    /// KVM or TCG.
    pub accel: Accel,
    /// The host TSC rate in kHz, passed to the guest so its TSC calibration cannot fail.
    pub tsc_khz: Option<u64>,
    /// The vhost-user socket of the vsock device.
    pub vsock_socket: PathBuf,
    /// The vhost-user socket of each share's virtiofsd, in config order.
    pub share_sockets: Vec<PathBuf>,
    /// The QMP socket QEMU listens on (used to learn that QEMU has come up).
    pub qmp_socket: PathBuf,
}

fn utf8<'a>(field: &str, path: &'a Path) -> Result<&'a str, ConfigError> {
    path.to_str().ok_or_else(|| ConfigError::Invalid {
        field: field.into(),
        reason: format!("{} is not valid UTF-8", path.display()),
    })
}

/// Escapes a value inside a QEMU `key=value,...` option list, where a comma is written twice.
fn esc(value: &str) -> String {
    value.replace(',', ",,")
}

fn host_addr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The balloon device, for its free page reporting only (it is never inflated).
pub const BALLOON_DEVICE: &str = "virtio-balloon-device,free-page-reporting=on";

/// TCG's translation cache, MiB.
pub const TCG_TB_SIZE_MIB: u32 = 32;

/// The node name of disk `index`'s raw format node (its `-drive ...,node-name=`).
pub fn format_node(index: usize) -> String {
    format!("fmt{index}")
}

/// The kernel command line for `config` under `launch`.
pub fn kernel_cmdline(config: &VmConfig, launch: &Launch) -> String {
    let machine = machine::for_arch(config.arch);
    let mut words = base_cmdline(machine);
    if let (Accel::Tcg, Some(khz), true) = (launch.accel, launch.tsc_khz, machine.tsc_rate) {
        words.push(format!("tsc_early_khz={khz}"));
    }
    words.extend(config.cmdline.iter().cloned());
    words.join(" ")
}

/// The arguments (without the program) that boot `config` on its architecture's machine
/// ([`machine::for_arch`]: `microvm` for x86_64, `virt` for aarch64).
pub fn qemu_args(config: &VmConfig, launch: &Launch) -> Result<Vec<String>, ConfigError> {
    let machine = machine::for_arch(config.arch);
    let mut args: Vec<String> = Vec::new();
    let mut push = |a: &[&str]| args.extend(a.iter().map(|s| (*s).to_owned()));
    let mem = format!("{}M", config.memory_mib);

    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    // vhost-user devices need guest memory QEMU can share with the helpers: a memfd.
    push(&["-M", &format!("{},memory-backend=mem", machine.board)]);
    push(&[
        "-object",
        &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
    ]);
    push(&["-m", &mem]);
    // TCG's translation cache defaults to 1 GiB and fills to ~64 MiB of anonymous memory
    // per idle guest; 32 MiB halves what QEMU holds beside the guest (docs/benchmarks.md).
    let accel = match launch.accel {
        Accel::Tcg => format!("tcg,tb-size={TCG_TB_SIZE_MIB}"),
        Accel::Kvm => launch.accel.qemu_name().to_owned(),
    };
    push(&["-accel", &accel]);
    push(&["-cpu", "max"]);
    push(&["-smp", &config.cpus.to_string()]);

    push(&["-kernel", utf8("kernel", &config.kernel)?]);
    if let Some(initrd) = &config.initrd {
        push(&["-initrd", utf8("initrd", initrd)?]);
    }
    push(&["-append", &kernel_cmdline(config, launch)]);

    match &config.console_log {
        Some(log) => {
            let log = esc(utf8("console_log", log)?);
            push(&["-chardev", &format!("file,id=console,path={log}")]);
            push(&["-serial", "chardev:console"]);
        }
        None => push(&["-serial", "null"]),
    }

    let qmp = esc(utf8("runtime_dir", &launch.qmp_socket)?);
    push(&[
        "-chardev",
        &format!("socket,id=qmp,path={qmp},server=on,wait=off"),
    ]);
    push(&["-mon", "chardev=qmp,mode=control"]);

    let vsock = esc(utf8("runtime_dir", &launch.vsock_socket)?);
    push(&["-chardev", &format!("socket,id=vsock,path={vsock}")]);
    // The id gives the device a fixed QOM path (crate::qmp::VSOCK_DEVICE_PATH).
    push(&["-device", "vhost-user-vsock-device,chardev=vsock,id=vsock"]);

    for (i, disk) in config.disks.iter().enumerate() {
        let path = esc(utf8(&format!("disks[{i}].path"), &disk.path)?);
        // cache=writeback: the host page cache is used and the guest's flushes reach the
        // disk (never cache=unsafe, which drops them). Read-write disks pass discard through
        // so deleted blocks shrink the sparse host file.
        let mode = if disk.read_only {
            "readonly=on"
        } else {
            "discard=unmap"
        };
        push(&[
            "-drive",
            // The format node's fixed name lets `QemuVm::replace_disk` swap its file later.
            &format!(
                "file={path},if=none,id=disk{i},node-name={},format=raw,cache=writeback,{mode}",
                format_node(i)
            ),
        ]);
        push(&[
            "-device",
            &format!("virtio-blk-device,drive=disk{i},serial={}", esc(&disk.id)),
        ]);
    }

    for (i, nic) in config.nics.iter().enumerate() {
        match &nic.attachment {
            NicAttachment::Tap { name } => push(&[
                "-netdev",
                &format!("tap,id=net{i},ifname={},script=no,downscript=no", esc(name)),
            ]),
            NicAttachment::User { forwards, isolated } => {
                let mut netdev = format!("user,id=net{i}");
                if *isolated {
                    netdev.push_str(",restrict=on");
                }
                for fwd in forwards {
                    let proto = match fwd.protocol {
                        Protocol::Tcp => "tcp",
                        Protocol::Udp => "udp",
                    };
                    netdev.push_str(&format!(
                        ",hostfwd={proto}:{}:{}-:{}",
                        host_addr(fwd.host_addr),
                        fwd.host_port,
                        fwd.guest_port
                    ));
                }
                push(&["-netdev", &netdev]);
            }
        }
        push(&[
            "-device",
            &format!("virtio-net-device,netdev=net{i},mac={}", nic.mac),
        ]);
    }

    for (i, (share, socket)) in config.shares.iter().zip(&launch.share_sockets).enumerate() {
        let socket = esc(utf8("runtime_dir", socket)?);
        push(&["-chardev", &format!("socket,id=fs{i},path={socket}")]);
        push(&[
            "-device",
            &format!("vhost-user-fs-device,chardev=fs{i},tag={}", esc(&share.tag)),
        ]);
    }
    // Free page reporting: the guest hands the pages it has freed back, and QEMU punches
    // them out of the guest RAM memfd, so a guest that touched memory once (booting, a
    // build step) does not hold it on the host forever (vminitd lowers the reported block
    // size; docs/benchmarks.md). Last, so the other devices keep their transports.
    args.extend(["-device".to_owned(), BALLOON_DEVICE.to_owned()]);
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm::{DiskConfig, NicConfig, PortForward, ShareConfig};

    fn config() -> VmConfig {
        VmConfig {
            arch: vmm::Arch::X86_64,
            kernel: "/guest/vmlinux".into(),
            initrd: Some("/guest/initramfs.cpio".into()),
            cmdline: vec!["vminitd.debug=1".into()],
            cpus: 2,
            memory_mib: 512,
            disks: vec![
                DiskConfig {
                    id: "rootfs".into(),
                    path: "/images/sha256,abc.ext4".into(),
                    read_only: true,
                },
                DiskConfig {
                    id: "upper".into(),
                    path: "/c/1/upper.ext4".into(),
                    read_only: false,
                },
            ],
            nics: vec![
                NicConfig {
                    mac: "02:42:ac:11:00:02".into(),
                    attachment: NicAttachment::Tap {
                        name: "ctap0".into(),
                    },
                },
                NicConfig {
                    mac: "02:42:ac:11:00:03".into(),
                    attachment: NicAttachment::User {
                        forwards: vec![
                            PortForward {
                                protocol: Protocol::Tcp,
                                host_addr: "127.0.0.1".parse().unwrap(),
                                host_port: 8080,
                                guest_port: 80,
                            },
                            PortForward {
                                protocol: Protocol::Udp,
                                host_addr: "::1".parse().unwrap(),
                                host_port: 5353,
                                guest_port: 53,
                            },
                        ],
                        isolated: true,
                    },
                },
            ],
            shares: vec![ShareConfig {
                tag: "data".into(),
                host_path: "/srv/data".into(),
                read_only: true,
            }],
            console_log: Some("/c/1/console.log".into()),
            runtime_dir: "/run/c/1".into(),
            rosetta: false,
        }
    }

    fn launch(accel: Accel) -> Launch {
        Launch {
            accel,
            tsc_khz: Some(2_300_000),
            vsock_socket: "/run/c/1/vsock.sock".into(),
            share_sockets: vec!["/run/c/1/fs0.sock".into()],
            qmp_socket: "/run/c/1/qmp.sock".into(),
        }
    }

    #[test]
    fn full_command_line() {
        let args = qemu_args(&config(), &launch(Accel::Tcg)).unwrap();
        insta::assert_snapshot!(args.join("\n"));
    }

    #[test]
    fn minimal_command_line_under_kvm() {
        let mut c = config();
        c.initrd = None;
        c.cmdline.clear();
        c.disks.clear();
        c.nics.clear();
        c.shares.clear();
        c.console_log = None;
        let args = qemu_args(&c, &launch(Accel::Kvm)).unwrap();
        insta::assert_snapshot!(args.join("\n"));
    }

    #[test]
    fn aarch64_command_line() {
        let mut c = config();
        c.arch = vmm::Arch::Aarch64;
        c.kernel = "/guest/arm64/vmlinux".into();
        c.initrd = Some("/guest/arm64/initramfs.cpio".into());
        c.nics.truncate(1);
        let args = qemu_args(&c, &launch(Accel::Tcg)).unwrap();
        insta::assert_snapshot!(args.join("\n"));
    }

    #[test]
    fn only_x86_64_gets_the_tsc_rate_and_timer_words() {
        let mut c = config();
        c.cmdline.clear();
        let x86 = kernel_cmdline(&c, &launch(Accel::Tcg));
        assert_eq!(
            x86,
            "console=ttyS0 quiet reboot=t panic=-1 tsc=reliable no_timer_check mitigations=off tsc_early_khz=2300000"
        );
        c.arch = vmm::Arch::Aarch64;
        let arm = kernel_cmdline(&c, &launch(Accel::Tcg));
        assert_eq!(
            arm,
            "console=ttyAMA0 quiet reboot=t panic=-1 mitigations=off"
        );
    }

    #[test]
    fn non_utf8_paths_are_refused_by_field() {
        use std::os::unix::ffi::OsStrExt;
        let mut c = config();
        c.disks[1].path = std::ffi::OsStr::from_bytes(b"/x/\xff.img").into();
        let err = qemu_args(&c, &launch(Accel::Tcg)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid disks[1].path: /x/\u{fffd}.img is not valid UTF-8"
        );
    }
}
