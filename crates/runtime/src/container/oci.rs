//! The OCI spec of the init process: Docker's default capabilities and mounts, root, limits.

use super::*;

/// Docker's default capabilities, for a spec that names none.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &spec::capability::DOCKER_DEFAULT_CAPABILITIES;

/// Docker's default mounts, used when the spec has none.
pub(super) fn default_mounts(shm_size: u64) -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm_size}")]}),
    ]
}

/// The init process's spec: the config's spec with root, hostname, mounts (defaults, tmpfs,
/// volumes, the /etc files), the memory limit and the namespaces filled in.
pub fn build_spec(config: &RuntimeConfig, write_resolv: bool) -> Result<Value, ContainerError> {
    let mut spec = serde_json::to_value(&config.spec)
        .map_err(|e| ContainerError::InvalidArgument(format!("spec: {e}")))?;
    let obj = spec
        .as_object_mut()
        .ok_or_else(|| ContainerError::InvalidArgument("spec is not an object".into()))?;
    obj.insert(
        "root".into(),
        json!({"path": GUEST_ROOTFS, "readonly": config.read_only}),
    );
    obj.insert("hostname".into(), json!(config.hostname));
    // vminitd grants every capability to a process whose spec names none; a container gets
    // Docker's defaults instead.
    if let Some(process) = obj.get_mut("process").and_then(Value::as_object_mut) {
        process.entry("capabilities").or_insert_with(|| {
            json!({"bounding": DOCKER_DEFAULT_CAPS,
                                      "effective": DOCKER_DEFAULT_CAPS,
                                      "permitted": DOCKER_DEFAULT_CAPS})
        });
    }
    let shm = config.shm_size_bytes.unwrap_or(64 << 20);
    let mut mounts = match obj.get("mounts").and_then(Value::as_array) {
        Some(m) => m.clone(),
        None => default_mounts(shm),
    };
    for t in &config.tmpfs {
        mounts.retain(|m| m["destination"] != json!(t.destination));
        mounts.push(
            json!({"destination": t.destination, "type": "tmpfs", "source": "tmpfs",
                            "options": t.options}),
        );
    }
    for (i, v) in config.volumes.iter().enumerate() {
        let mut options = vec!["rbind", "rprivate"];
        if v.read_only {
            options.push("ro");
        }
        let source = match v.kind {
            VolumeKind::Block | VolumeKind::Directory => format!("{GUEST_DIR}/volumes/{i}"),
            VolumeKind::File => {
                let name = v.path.file_name().ok_or_else(|| {
                    ContainerError::InvalidArgument(format!("{} names no file", v.path.display()))
                })?;
                format!("{GUEST_DIR}/volumes/{i}/{}", name.to_string_lossy())
            }
            VolumeKind::Socket => crate::relay::guest_socket_path(i),
        };
        mounts.push(json!({"destination": v.destination, "type": "bind",
                            "source": source, "options": options}));
    }
    let mut etc = vec!["hostname", "hosts"];
    if write_resolv {
        etc.push("resolv.conf");
    }
    for f in etc {
        let dest = format!("/etc/{f}");
        if mounts.iter().any(|m| m["destination"] == json!(dest)) {
            continue; // the user mounted their own
        }
        let mut options = vec!["rbind", "rprivate"];
        if config.read_only {
            options.push("ro");
        }
        mounts.push(json!({"destination": dest, "type": "bind",
                            "source": format!("{GUEST_DIR}/etc/{f}"), "options": options}));
    }
    obj.insert("mounts".into(), Value::Array(mounts));
    let linux = obj
        .entry("linux")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ContainerError::InvalidArgument("spec.linux is not an object".into()))?;
    linux.entry("namespaces").or_insert_with(|| {
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
               {"type": "cgroup"}])
    });
    let resources = linux
        .entry("resources")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            ContainerError::InvalidArgument("spec.linux.resources is not an object".into())
        })?;
    let memory = resources
        .entry("memory")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            ContainerError::InvalidArgument("spec.linux.resources.memory is not an object".into())
        })?;
    memory
        .entry("limit")
        .or_insert_with(|| json!(config.memory_bytes));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn spec_gets_root_mounts_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = runtime_api::config::testing::sample(dir.path());
        config.read_only = true;
        config.tmpfs = vec![runtime_api::config::TmpfsMount {
            destination: "/dev/shm".into(),
            options: vec!["size=1m".into()],
        }];
        let spec = build_spec(&config, true).unwrap();
        assert_eq!(
            spec["root"],
            json!({"path": GUEST_ROOTFS, "readonly": true})
        );
        assert_eq!(spec["hostname"], json!("c1"));
        let mounts = spec["mounts"].as_array().unwrap();
        let dests: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
        ] {
            assert!(dests.contains(&d), "{d} missing from {dests:?}");
        }
        // The tmpfs replaced the default /dev/shm.
        let shm: Vec<&Value> = mounts
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0]["options"], json!(["size=1m"]));
        assert_eq!(
            spec["linux"]["resources"]["memory"]["limit"],
            json!(256u64 << 20)
        );
        // The result is still a valid OCI spec.
        let _: oci_spec::runtime::Spec = serde_json::from_value(spec.clone()).unwrap();

        let no_dns = build_spec(&config, false).unwrap();
        assert!(
            !no_dns["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["destination"] == "/etc/resolv.conf")
        );
    }
}
