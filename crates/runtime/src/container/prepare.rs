//! A container's set-up as one batch of agent steps (`PrepareContainer`): the clock, a
//! pooled guest's MACs, the root filesystem and volumes, the network, the /etc files,
//! Rosetta and the init process, sent in one round trip instead of one rpc each.
//!
//! Every step keeps the words of the rpc it replaces: a failed step becomes the same
//! [`ContainerError`] the single call would have produced.

use agent::v1::prepare_step::Step;
use runtime_api::config::{Dns, HostEntry, NetworkAttachment};

use super::*;

/// Where vminitd mounts the Rosetta share (the VMM attaches it under
/// [`vmm::ROSETTA_SHARE_TAG`] when the VM config asks for Rosetta).
const GUEST_ROSETTA_DIR: &str = "/run/rosetta";

/// The IPv6 lines Docker puts in every /etc/hosts after the localhost lines.
const DOCKER_IPV6_HOSTS: &[(&str, &str)] = &[
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
];

/// The steps of one batch, each with what it does in the user's words and its rpc's name.
#[derive(Debug, Default)]
pub(super) struct Steps {
    steps: Vec<pb::PrepareStep>,
    what: Vec<(String, &'static str)>,
}

/// Why a batch failed.
pub(super) enum PrepareError {
    /// The call itself failed (transport, timeout, a malformed batch).
    Call(ClientError),
    /// Step `what` (its rpc `rpc`) failed with `status`.
    Step {
        what: String,
        rpc: &'static str,
        status: tonic::Status,
        /// It was the init process's creation.
        create_process: bool,
    },
}

impl PrepareError {
    /// The error as the single rpc of the failed step would have reported it.
    pub(super) fn into_container_error(self) -> ContainerError {
        match self {
            PrepareError::Call(source) => ContainerError::Agent {
                step: "preparing the container in the guest".into(),
                source,
            },
            PrepareError::Step {
                what, rpc, status, ..
            } => ContainerError::Agent {
                step: what,
                source: ClientError::Rpc { rpc, status },
            },
        }
    }
}

impl Steps {
    /// Appends a step.
    pub(super) fn push(&mut self, what: impl Into<String>, rpc: &'static str, step: Step) {
        self.push_with_retry(what, rpc, step, Vec::new());
    }

    fn push_with_retry(
        &mut self,
        what: impl Into<String>,
        rpc: &'static str,
        step: Step,
        retry_options: Vec<String>,
    ) {
        self.steps.push(pb::PrepareStep {
            step: Some(step),
            retry_options,
        });
        self.what.push((what.into(), rpc));
    }

    /// Sets the guest's wall clock to the host's.
    pub(super) fn set_clock(&mut self) {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i64;
        self.push(
            "setting the guest clock",
            "SetTime",
            Step::SetTime(pb::SetTimeRequest { unix_nanos: nanos }),
        );
    }

    pub(super) fn mount(
        &mut self,
        source: String,
        target: String,
        fstype: &str,
        options: Vec<String>,
    ) {
        self.mount_with_retry(source, target, fstype, options, Vec::new());
    }

    fn mount_with_retry(
        &mut self,
        source: String,
        target: String,
        fstype: &str,
        options: Vec<String>,
        retry_options: Vec<String>,
    ) {
        let what = format!("mounting {source} at {target}");
        let step = Step::Mount(pb::MountRequest {
            source,
            target,
            fstype: fstype.to_string(),
            options,
            create_target: true,
        });
        self.push_with_retry(what, "Mount", step, retry_options);
    }

    pub(super) fn mkdir(&mut self, path: String) {
        self.push(
            format!("creating {path}"),
            "Mkdir",
            Step::Mkdir(pb::MkdirRequest {
                path,
                mode: 0o755,
                parents: true,
                uid: 0,
                gid: 0,
            }),
        );
    }

    /// How many steps there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.steps.len()
    }

    /// Sends the batch and waits for its answer.
    pub(super) async fn send(self, agent: &AgentClient) -> Result<(), PrepareError> {
        let Steps { steps, what } = self;
        let started = std::time::Instant::now();
        let n = steps.len();
        let answer = agent
            .prepare_container(pb::PrepareContainerRequest { steps })
            .await
            .map_err(PrepareError::Call)?;
        tracing::debug!(steps = n, elapsed = ?started.elapsed(), "container prepared in the guest");
        for i in &answer.retried {
            if let Some((what, _)) = what.get(*i as usize) {
                tracing::warn!("{what} failed; mounted read-only without its journal");
            }
        }
        let done = answer.completed as usize;
        if done >= n {
            return Ok(());
        }
        let (what, rpc) = what.into_iter().nth(done).unwrap_or_else(|| {
            // done < n = what.len(), so this is never reached.
            ("an unknown step".into(), "PrepareContainer")
        });
        let status = tonic::Status::new(
            tonic::Code::from_i32(answer.failed_code),
            answer.failed_message,
        );
        Err(PrepareError::Step {
            create_process: rpc == "CreateProcess",
            what,
            rpc,
            status,
        })
    }
}

/// The steps that set a container up in a booted guest, before its init process: the
/// clock, a pooled guest's NICs taking the container's MACs (`slot_macs`, the MACs the
/// pool booted it with), the image's rootfs and the writable layer joined by an overlay,
/// the volumes, the network, the /etc files and Rosetta.
pub(super) fn setup_steps(
    config: &RuntimeConfig,
    write_resolv: bool,
    slot_macs: Option<&[String]>,
) -> Steps {
    let mut steps = Steps::default();
    steps.set_clock();
    if let Some(slot_macs) = slot_macs {
        for (slot_mac, net) in slot_macs.iter().zip(&config.networks) {
            steps.push(
                format!("setting the mac of the pooled guest's link {slot_mac}"),
                "LinkSet",
                Step::LinkSet(pb::LinkSetRequest {
                    name: String::new(),
                    mac: slot_mac.clone(),
                    up: false,
                    mtu: 0,
                    rename_to: String::new(),
                    set_mac: net.mac.clone(),
                }),
            );
        }
    }
    rootfs_steps(&mut steps, config);
    network_steps(&mut steps, &config.networks);
    etc_steps(&mut steps, &EtcFiles::of_container(config), write_resolv);
    if config.rosetta {
        // From here on every x86_64 executable in the guest runs through the translator.
        steps.mount(
            vmm::ROSETTA_SHARE_TAG.to_owned(),
            GUEST_ROSETTA_DIR.to_owned(),
            "virtiofs",
            vec!["ro".to_owned()],
        );
        steps.push(
            "registering rosetta for x86_64 programs",
            "RegisterBinfmt",
            Step::RegisterBinfmt(pb::RegisterBinfmtRequest {
                name: "rosetta".into(),
                arch: vmm::Arch::X86_64.name().into(),
                interpreter: format!("{GUEST_ROSETTA_DIR}/rosetta"),
            }),
        );
    }
    steps
}

/// The image's rootfs (read-only) and the writable layer joined at [`GUEST_ROOTFS`], then
/// each volume at `volumes/N`.
fn rootfs_steps(steps: &mut Steps, config: &RuntimeConfig) {
    layer_steps(steps);
    volume_steps(steps, config);
}

/// What a maintenance VM (a stopped container's files, no process) sets up: the clock and
/// the container's root at [`GUEST_ROOTFS`]. Writable, as a running container has it (the
/// writable layer's upper takes the changes); else read-only, with the upper directory as
/// the top lower layer, so nothing of the container changes.
pub(super) fn maintenance_steps(writable: bool) -> Steps {
    let mut steps = Steps::default();
    steps.set_clock();
    if writable {
        layer_steps(&mut steps);
        return steps;
    }
    disk_steps(&mut steps);
    steps.mount(
        "overlay".into(),
        GUEST_ROOTFS.into(),
        "overlay",
        vec![
            "ro".into(),
            format!("lowerdir={GUEST_DIR}/rw/upper:{GUEST_DIR}/lower"),
        ],
    );
    steps
}

/// The image's rootfs (read-only) at `lower/`, the writable layer at `rw/` and its upper
/// directory (a layer that never ran has none yet).
fn disk_steps(steps: &mut Steps) {
    steps.mount(
        "block-serial:rootfs".into(),
        format!("{GUEST_DIR}/lower"),
        "ext4",
        vec!["ro".into()],
    );
    steps.mount(
        "block-serial:rw".into(),
        format!("{GUEST_DIR}/rw"),
        "ext4",
        vec![],
    );
    steps.mkdir(format!("{GUEST_DIR}/rw/upper"));
}

/// The image's rootfs (read-only) and the writable layer joined at [`GUEST_ROOTFS`].
fn layer_steps(steps: &mut Steps) {
    disk_steps(steps);
    steps.mkdir(format!("{GUEST_DIR}/rw/work"));
    steps.mount(
        "overlay".into(),
        GUEST_ROOTFS.into(),
        "overlay",
        vec![format!(
            "lowerdir={GUEST_DIR}/lower,upperdir={GUEST_DIR}/rw/upper,workdir={GUEST_DIR}/rw/work"
        )],
    );
}

/// Each volume of `config` at `volumes/N`.
fn volume_steps(steps: &mut Steps, config: &RuntimeConfig) {
    for (i, v) in config.volumes.iter().enumerate() {
        let options = if v.read_only {
            vec!["ro".into()]
        } else {
            vec![]
        };
        let target = format!("{GUEST_DIR}/volumes/{i}");
        match v.kind {
            VolumeKind::Block => {
                // A read-only disk whose journal needs replaying (its last user was killed)
                // cannot be mounted as is: it is mounted without the journal instead.
                let retry = if v.read_only {
                    vec!["ro".into(), "noload".into()]
                } else {
                    Vec::new()
                };
                steps.mount_with_retry(
                    format!("block-serial:vol{i}"),
                    target,
                    "ext4",
                    options,
                    retry,
                );
            }
            VolumeKind::Directory | VolumeKind::File => {
                steps.mount(format!("vol{i}"), target, "virtiofs", options);
            }
            VolumeKind::Socket => {}
        }
    }
}

/// The steps that bring up each NIC (found by the MAC the host gave it), give it its
/// address, and the first one the default route: a container's VM and the builder VM the
/// same way.
pub(super) fn network_steps(steps: &mut Steps, networks: &[NetworkAttachment]) {
    for (i, net) in networks.iter().enumerate() {
        let mac = net.mac.clone();
        steps.push(
            format!("bringing up the link with mac {mac}"),
            "LinkSet",
            Step::LinkSet(pb::LinkSetRequest {
                name: String::new(),
                mac: mac.clone(),
                up: true,
                mtu: net.mtu.unwrap_or(0),
                rename_to: String::new(),
                set_mac: String::new(),
            }),
        );
        if let Some(cidr) = &net.address {
            steps.push(
                format!("adding {cidr} to the link with mac {mac}"),
                "AddressAdd",
                Step::AddressAdd(pb::AddressAddRequest {
                    link: String::new(),
                    link_mac: mac.clone(),
                    cidr: cidr.clone(),
                }),
            );
        }
        if i == 0
            && let Some(gw) = &net.gateway
        {
            steps.push(
                format!("adding the default route via {gw}"),
                "RouteAdd",
                Step::RouteAdd(pb::RouteAddRequest {
                    link: String::new(),
                    link_mac: mac,
                    destination: String::new(),
                    gateway: gw.clone(),
                }),
            );
        }
    }
}

/// What goes into a guest's hostname, hosts and resolv.conf files.
pub(super) struct EtcFiles<'a> {
    /// The guest directory the files are written in.
    pub dir: String,
    pub hostname: &'a str,
    /// The first one's address is the hostname's in /etc/hosts, its gateway the nameserver
    /// when `dns` names none.
    pub networks: &'a [NetworkAttachment],
    pub extra_hosts: &'a [HostEntry],
    pub dns: &'a Dns,
}

impl<'a> EtcFiles<'a> {
    /// A container's, under the guest's etc/ directory.
    pub(super) fn of_container(config: &'a RuntimeConfig) -> Self {
        EtcFiles {
            dir: format!("{GUEST_DIR}/etc"),
            hostname: &config.hostname,
            networks: &config.networks,
            extra_hosts: &config.extra_hosts,
            dns: &config.dns,
        }
    }
}

/// The steps that write hostname, hosts and (unless DNS is off) resolv.conf of `files`.
pub(super) fn etc_steps(steps: &mut Steps, files: &EtcFiles<'_>, write_resolv: bool) {
    let etc = &files.dir;
    steps.push(
        "writing /etc/hostname",
        "WriteFile",
        Step::WriteFile(pb::WriteFileRequest {
            path: format!("{etc}/hostname"),
            data: format!("{}\n", files.hostname).into_bytes(),
            mode: 0o644,
            append: false,
            create_parents: true,
        }),
    );
    let mut entries: Vec<pb::HostsEntry> = DOCKER_IPV6_HOSTS
        .iter()
        .map(|(ip, name)| pb::HostsEntry {
            ip: ip.to_string(),
            names: vec![name.to_string()],
        })
        .collect();
    if let Some(ip) = files
        .networks
        .first()
        .and_then(|n| n.address.as_deref())
        .and_then(|a| a.split('/').next())
    {
        entries.push(pb::HostsEntry {
            ip: ip.to_string(),
            names: vec![files.hostname.to_string()],
        });
    }
    entries.extend(files.extra_hosts.iter().map(|h| pb::HostsEntry {
        ip: h.ip.clone(),
        names: h.names.clone(),
    }));
    steps.push(
        "writing /etc/hosts",
        "ConfigureHosts",
        Step::ConfigureHosts(pb::ConfigureHostsRequest {
            path: format!("{etc}/hosts"),
            entries,
        }),
    );
    if write_resolv {
        let mut nameservers = files.dns.nameservers.clone();
        if nameservers.is_empty()
            && let Some(gw) = files.networks.first().and_then(|n| n.gateway.clone())
        {
            nameservers.push(gw);
        }
        steps.push(
            "writing /etc/resolv.conf",
            "ConfigureDns",
            Step::ConfigureDns(pb::ConfigureDnsRequest {
                path: format!("{etc}/resolv.conf"),
                nameservers,
                search: files.dns.search.clone(),
                options: files.dns.options.clone(),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(steps: &Steps) -> Vec<&str> {
        steps.what.iter().map(|(w, _)| w.as_str()).collect()
    }

    #[test]
    fn a_pooled_guest_takes_its_macs_before_the_links_come_up() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut config = runtime_api::config::testing::sample(dir.path());
        config.networks = vec![runtime_api::config::NetworkAttachment {
            mac: "02:42:ac:11:00:02".into(),
            attachment: vmm::NicAttachment::User {
                forwards: vec![],
                isolated: false,
            },
            address: Some("192.168.64.2/24".into()),
            gateway: Some("192.168.64.1".into()),
            mtu: None,
        }];
        config.hostname = "box".into();
        let slot = vec!["02:00:00:00:00:09".to_string()];
        let steps = setup_steps(&config, true, Some(&slot));
        assert_eq!(
            names(&steps),
            [
                "setting the guest clock",
                "setting the mac of the pooled guest's link 02:00:00:00:00:09",
                "mounting block-serial:rootfs at /run/container/lower",
                "mounting block-serial:rw at /run/container/rw",
                "creating /run/container/rw/upper",
                "creating /run/container/rw/work",
                "mounting overlay at /run/container/rootfs",
                "bringing up the link with mac 02:42:ac:11:00:02",
                "adding 192.168.64.2/24 to the link with mac 02:42:ac:11:00:02",
                "adding the default route via 192.168.64.1",
                "writing /etc/hostname",
                "writing /etc/hosts",
                "writing /etc/resolv.conf",
            ]
        );
        let Some(Step::LinkSet(adopt)) = &steps.steps[1].step else {
            panic!("step 1 is not a LinkSet: {:?}", steps.steps[1]);
        };
        assert_eq!(
            (adopt.mac.as_str(), adopt.set_mac.as_str(), adopt.up),
            ("02:00:00:00:00:09", "02:42:ac:11:00:02", false)
        );
        let Some(Step::ConfigureHosts(hosts)) = &steps.steps[11].step else {
            panic!("step 11 is not ConfigureHosts");
        };
        let last = hosts
            .entries
            .last()
            .map(|e| (e.ip.as_str(), e.names.clone()));
        assert_eq!(last, Some(("192.168.64.2", vec!["box".to_string()])));
        let cold = setup_steps(&config, false, None);
        assert_eq!(cold.len(), steps.len() - 2, "no mac step, no resolv.conf");
    }
}
