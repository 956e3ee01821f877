//! Docker's container create body (`Config` + `HostConfig` + `NetworkingConfig`) translated
//! to our container configuration, with a 400 naming every field whose meaning a container
//! in its own VM cannot honour (docs/docker-api.md lists them). Pure: no I/O.

use api::v1;
use bollard_stubs::models as m;

use super::error::{DResult, DockerError};

fn refuse_if(cond: bool, field: &str, why: &str) -> DResult<()> {
    if cond {
        Err(DockerError::unsupported_field(field, why))
    } else {
        Ok(())
    }
}

fn nonempty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn nonzero(v: Option<i64>) -> bool {
    v.is_some_and(|v| v > 0)
}

fn parse_port_key(key: &str) -> DResult<(u32, v1::Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let port: u32 = port
        .parse()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| DockerError::bad_request(format!("invalid port {key:?}")))?;
    let proto = match proto {
        "tcp" | "" => v1::Protocol::Tcp,
        "udp" => v1::Protocol::Udp,
        other => {
            return Err(DockerError::unsupported_field(
                "HostConfig.PortBindings",
                &format!("protocol {other} (only tcp and udp)"),
            ));
        }
    };
    Ok((port, proto))
}

fn host_port(text: &str) -> DResult<(u32, u32)> {
    if text.is_empty() {
        return Ok((0, 1));
    }
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let bad = || DockerError::bad_request(format!("invalid host port {text:?}"));
    let a: u32 = a.parse().map_err(|_| bad())?;
    let b: u32 = b.parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, 1))
}

/// A signal by name (`SIGTERM`, `TERM`) or number, as Docker takes them.
pub fn signal_number(text: &str, field: &str) -> DResult<i32> {
    text.parse::<spec::Signal>()
        .map(|s| s.number())
        .map_err(|e| DockerError::bad_request(format!("invalid {field}: {e}")))
}

fn mount_of(mnt: &m::Mount) -> DResult<v1::Mount> {
    let target = mnt.target.clone().unwrap_or_default();
    if target.is_empty() {
        return Err(DockerError::bad_request(
            "HostConfig.Mounts: a mount has no Target",
        ));
    }
    let readonly = mnt.read_only.unwrap_or(false);
    let kind = match mnt.typ {
        Some(m::MountType::BIND) => v1::mount::Kind::Bind(v1::BindMount {
            source: mnt.source.clone().unwrap_or_default(),
        }),
        Some(m::MountType::VOLUME) | None => {
            if let Some(d) = mnt
                .volume_options
                .as_ref()
                .and_then(|o| o.driver_config.as_ref())
                .and_then(|c| c.name.as_deref())
                .filter(|n| !n.is_empty() && *n != "local")
            {
                return Err(DockerError::unsupported_field(
                    "HostConfig.Mounts.VolumeOptions.DriverConfig",
                    &format!("volume driver {d} (only local)"),
                ));
            }
            v1::mount::Kind::Volume(v1::VolumeMount {
                name: mnt.source.clone().unwrap_or_default(),
            })
        }
        Some(m::MountType::TMPFS) => {
            let o = mnt.tmpfs_options.clone().unwrap_or_default();
            v1::mount::Kind::Tmpfs(v1::TmpfsMount {
                size_bytes: o.size_bytes.unwrap_or(0).max(0) as u64,
                mode: o.mode.unwrap_or(0).max(0) as u32,
                options: vec![],
            })
        }
        Some(other) => {
            return Err(DockerError::unsupported_field(
                "HostConfig.Mounts.Type",
                &format!("{other:?} mounts (only bind, volume and tmpfs)").to_lowercase(),
            ));
        }
    };
    Ok(v1::Mount {
        target,
        readonly,
        kind: Some(kind),
    })
}

fn tmpfs_of(target: &str, opts: &str) -> DResult<v1::Mount> {
    let mut size = 0;
    let mut mode = 0;
    let mut options = vec![];
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if let Some(s) = o.strip_prefix("size=") {
            size = s
                .parse::<spec::ByteSize>()
                .map_err(|e| DockerError::bad_request(format!("HostConfig.Tmpfs {target}: {e}")))?
                .bytes();
        } else if let Some(md) = o.strip_prefix("mode=") {
            mode = u32::from_str_radix(md, 8).map_err(|_| {
                DockerError::bad_request(format!("HostConfig.Tmpfs {target}: bad mode {md}"))
            })?;
        } else {
            options.push(o.to_owned());
        }
    }
    Ok(v1::Mount {
        target: target.to_owned(),
        readonly: options.iter().any(|o| o == "ro"),
        kind: Some(v1::mount::Kind::Tmpfs(v1::TmpfsMount {
            size_bytes: size,
            mode,
            options,
        })),
    })
}

/// Translates Docker's create body into our container configuration, refusing with a 400
/// naming the field whatever would change the container's meaning and we cannot do.
/// Returns warnings for what is accepted but not applied.
pub fn translate(
    body: &m::ContainerCreateBody,
    name: Option<&str>,
    platform: Option<&str>,
) -> DResult<(v1::ContainerConfig, Vec<String>)> {
    let hc = body.host_config.clone().unwrap_or_default();
    let mut warnings = vec![];
    refuse_if(
        hc.privileged == Some(true),
        "HostConfig.Privileged",
        "containers run in their own VM without host devices",
    )?;
    refuse_if(
        nonempty(&hc.devices),
        "HostConfig.Devices",
        "host devices cannot be passed into a container's VM",
    )?;
    refuse_if(
        nonempty(&hc.device_requests),
        "HostConfig.DeviceRequests",
        "host devices (GPUs) cannot be passed into a container's VM",
    )?;
    refuse_if(
        nonempty(&hc.device_cgroup_rules),
        "HostConfig.DeviceCgroupRules",
        "host devices cannot be passed into a container's VM",
    )?;
    for (field, v) in [
        ("HostConfig.PidMode", &hc.pid_mode),
        ("HostConfig.IpcMode", &hc.ipc_mode),
        ("HostConfig.UTSMode", &hc.uts_mode),
        ("HostConfig.UsernsMode", &hc.userns_mode),
    ] {
        let v = v.as_deref().unwrap_or("");
        refuse_if(
            v == "host" || v.starts_with("container:"),
            field,
            &format!(
                "{v:?}: a container's VM shares no namespace with the host or another container"
            ),
        )?;
    }
    refuse_if(
        nonempty(&hc.volumes_from),
        "HostConfig.VolumesFrom",
        "name the volumes instead",
    )?;
    refuse_if(
        nonempty(&hc.links),
        "HostConfig.Links",
        "legacy links; use a user-defined network",
    )?;
    let mut extra_hosts = Vec::new();
    for text in hc.extra_hosts.iter().flatten() {
        let host = text
            .parse::<spec::ExtraHost>()
            .map_err(|e| DockerError::bad_request(e.to_string()))?;
        extra_hosts.push(match host.ip {
            spec::HostIp::Ip(ip) => format!("{}:{ip}", host.name),
            spec::HostIp::HostGateway => format!("{}:{}", host.name, spec::HOST_GATEWAY),
        });
    }
    refuse_if(
        nonempty(&hc.group_add),
        "HostConfig.GroupAdd",
        "not implemented yet",
    )?;
    refuse_if(
        nonempty(&hc.security_opt),
        "HostConfig.SecurityOpt",
        "the seccomp profile and capabilities are fixed; use CapAdd/CapDrop",
    )?;
    refuse_if(
        hc.sysctls.as_ref().is_some_and(|s| !s.is_empty()),
        "HostConfig.Sysctls",
        "not implemented yet",
    )?;
    refuse_if(
        hc.storage_opt.as_ref().is_some_and(|s| !s.is_empty()),
        "HostConfig.StorageOpt",
        "the writable layer's size is fixed",
    )?;
    refuse_if(
        hc.runtime
            .as_deref()
            .is_some_and(|r| !r.is_empty() && r != "runc"),
        "HostConfig.Runtime",
        "every container runs in its own VM",
    )?;
    refuse_if(
        nonzero(hc.cpu_shares)
            || nonzero(hc.cpu_quota)
            || nonzero(hc.cpu_period)
            || nonzero(hc.cpu_count)
            || nonzero(hc.cpu_percent),
        "HostConfig.CpuShares/CpuQuota/CpuPeriod/CpuCount",
        "a container's VM gets whole vCPUs: use NanoCpus",
    )?;
    refuse_if(
        hc.cpuset_cpus.as_deref().is_some_and(|s| !s.is_empty())
            || hc.cpuset_mems.as_deref().is_some_and(|s| !s.is_empty()),
        "HostConfig.CpusetCpus",
        "vCPUs are not pinned",
    )?;
    refuse_if(
        nonzero(hc.memory_reservation) || nonzero(hc.memory_swap) && hc.memory_swap != hc.memory,
        "HostConfig.MemoryReservation/MemorySwap",
        "a container's VM has fixed memory and no swap",
    )?;
    refuse_if(
        nonzero(hc.pids_limit),
        "HostConfig.PidsLimit",
        "not implemented yet",
    )?;
    refuse_if(
        hc.oom_kill_disable == Some(true),
        "HostConfig.OomKillDisable",
        "not implemented yet",
    )?;
    refuse_if(
        hc.oom_score_adj.is_some_and(|v| v != 0),
        "HostConfig.OomScoreAdj",
        "not implemented yet",
    )?;
    refuse_if(
        hc.blkio_weight.is_some_and(|v| v != 0)
            || nonempty(&hc.blkio_weight_device)
            || nonempty(&hc.blkio_device_read_bps)
            || nonempty(&hc.blkio_device_write_bps)
            || nonempty(&hc.blkio_device_read_iops)
            || nonempty(&hc.blkio_device_write_iops),
        "HostConfig.Blkio*",
        "not implemented yet",
    )?;
    if let Some(t) = hc.log_config.as_ref().and_then(|l| l.typ.as_deref()) {
        refuse_if(
            !matches!(t, "" | "json-file" | "local"),
            "HostConfig.LogConfig.Type",
            &format!("log driver {t} (output is kept as json-file)"),
        )?;
    }
    let healthcheck = body.healthcheck.as_ref().map(healthcheck_of).transpose()?;
    if body
        .healthcheck
        .as_ref()
        .and_then(|h| h.start_interval)
        .is_some_and(|i| i != 0)
    {
        warnings.push("Healthcheck.StartInterval is ignored: probes run every Interval".to_owned());
    }

    // Networks: the mode names the first network; endpoints add more.
    let mut networks: Vec<v1::NetworkRequest> = vec![];
    let mode = hc.network_mode.clone().unwrap_or_default();
    let is_default = |n: &str| matches!(n, "" | "default" | "bridge");
    if body.network_disabled == Some(true) || mode == "none" {
        networks.push(v1::NetworkRequest {
            name: "none".into(),
            ..Default::default()
        });
    } else {
        refuse_if(
            mode == "host",
            "HostConfig.NetworkMode",
            "\"host\": a container's VM has its own network stack",
        )?;
        refuse_if(
            mode.starts_with("container:"),
            "HostConfig.NetworkMode",
            "sharing another container's network stack",
        )?;
        if !is_default(&mode) {
            networks.push(v1::NetworkRequest {
                name: mode.clone(),
                ..Default::default()
            });
        }
        let mut extra: Vec<&String> = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.as_ref())
            .map(|e| e.keys().collect())
            .unwrap_or_default();
        extra.sort();
        for n in extra {
            if !is_default(n) && !networks.iter().any(|x| &x.name == n) {
                networks.push(v1::NetworkRequest {
                    name: n.clone(),
                    ..Default::default()
                });
            }
        }
    }

    // Ports: bindings, then -P's exposed ports on free host ports.
    let mut ports = vec![];
    let mut keys: Vec<(&String, &Option<Vec<m::PortBinding>>)> =
        hc.port_bindings.iter().flatten().collect();
    keys.sort_by_key(|(k, _)| (*k).clone());
    for (k, bindings) in keys {
        let (container_port, protocol) = parse_port_key(k)?;
        for b in bindings.iter().flatten() {
            let (hp, count) = host_port(b.host_port.as_deref().unwrap_or(""))?;
            ports.push(v1::PortMapping {
                host_ip: b.host_ip.clone().unwrap_or_default(),
                host_port: hp,
                container_port,
                count,
                protocol: protocol as i32,
            });
        }
    }
    // -P: the daemon publishes the image's exposed ports and these on free host ports.
    let mut expose: Vec<String> = body.exposed_ports.iter().flatten().cloned().collect();
    expose.sort();
    for k in &expose {
        parse_port_key(k)?;
    }

    // Mounts: -v binds and volumes, --mount, --tmpfs, and the anonymous volumes of Volumes.
    let mut mounts = vec![];
    for b in hc.binds.iter().flatten() {
        let spec = spec::mount::parse_volume(b)
            .map_err(|e| DockerError::bad_request(format!("HostConfig.Binds: {e}")))?;
        mounts.push(v1::Mount::from(&spec));
    }
    for mnt in hc.mounts.iter().flatten() {
        mounts.push(mount_of(mnt)?);
    }
    let mut tmpfs: Vec<(&String, &String)> = hc.tmpfs.iter().flatten().collect();
    tmpfs.sort();
    for (target, opts) in tmpfs {
        mounts.push(tmpfs_of(target, opts)?);
    }
    for target in body.volumes.iter().flatten() {
        if !mounts.iter().any(|x: &v1::Mount| x.target == *target) {
            mounts.push(v1::Mount {
                target: target.clone(),
                readonly: false,
                kind: Some(v1::mount::Kind::Volume(v1::VolumeMount {
                    name: String::new(),
                })),
            });
        }
    }

    let restart_policy = hc.restart_policy.as_ref().map(|r| {
        use v1::restart_policy::Kind;
        let kind = match r.name {
            Some(m::RestartPolicyNameEnum::ALWAYS) => Kind::Always,
            Some(m::RestartPolicyNameEnum::UNLESS_STOPPED) => Kind::UnlessStopped,
            Some(m::RestartPolicyNameEnum::ON_FAILURE) => Kind::OnFailure,
            _ => Kind::No,
        };
        v1::RestartPolicy {
            kind: kind as i32,
            max_retries: r.maximum_retry_count.unwrap_or(0).max(0) as u32,
        }
    });
    let mut labels: Vec<v1::Label> = body
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| v1::Label {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    labels.sort_by(|a, b| a.key.cmp(&b.key));

    // Docker's entrypoint is a list: its first word is ours, the rest go before the command.
    let mut command = body.cmd.clone().unwrap_or_default();
    let entrypoint = match &body.entrypoint {
        None => None,
        Some(e) if e.is_empty() => Some(String::new()),
        Some(e) => {
            let mut rest = e[1..].to_vec();
            rest.append(&mut command);
            command = rest;
            Some(e[0].clone())
        }
    };
    let stop_signal = match body.stop_signal.as_deref() {
        None | Some("") => 0,
        Some(s) => signal_number(s, "StopSignal")?,
    };
    let ulimits = hc
        .ulimits
        .iter()
        .flatten()
        .map(|u| v1::Ulimit {
            name: u.name.clone().unwrap_or_default(),
            soft: u
                .soft
                .map(|v| if v < 0 { u64::MAX } else { v as u64 })
                .unwrap_or(0),
            hard: u
                .hard
                .map(|v| if v < 0 { u64::MAX } else { v as u64 })
                .unwrap_or(0),
        })
        .collect();
    let dns = v1::DnsConfig {
        disabled: false,
        nameservers: hc.dns.clone().unwrap_or_default(),
        domain: body.domainname.clone().unwrap_or_default(),
        search: hc.dns_search.clone().unwrap_or_default(),
        options: hc.dns_options.clone().unwrap_or_default(),
    };
    let config = v1::ContainerConfig {
        id: name.unwrap_or_default().trim_start_matches('/').to_owned(),
        image: body.image.clone().unwrap_or_default(),
        platform: platform.unwrap_or_default().to_owned(),
        process: Some(v1::ProcessConfig {
            entrypoint,
            command,
            env: body.env.clone().unwrap_or_default(),
            working_dir: body.working_dir.clone().unwrap_or_default(),
            user: body.user.clone().unwrap_or_default(),
            tty: body.tty.unwrap_or(false),
            stdin_open: body.open_stdin.unwrap_or(false),
            ulimits,
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
        }),
        resources: Some(v1::Resources {
            cpus_millis: (hc.nano_cpus.unwrap_or(0).max(0) / 1_000_000) as u32,
            memory_bytes: hc.memory.unwrap_or(0).max(0) as u64,
            shm_size_bytes: hc.shm_size.unwrap_or(0).max(0) as u64,
        }),
        mounts,
        ports,
        networks,
        dns: Some(dns),
        labels,
        read_only: hc.readonly_rootfs.unwrap_or(false),
        init: hc.init.unwrap_or(false),
        auto_remove: hc.auto_remove.unwrap_or(false),
        restart_policy,
        stop_signal,
        stop_timeout_seconds: body.stop_timeout.filter(|t| *t >= 0).map(|t| t as u32),
        hostname: body.hostname.clone().unwrap_or_default(),
        healthcheck,
        extra_hosts,
        publish_all: hc.publish_all_ports == Some(true),
        expose,
        ..Default::default()
    };
    if config.image.is_empty() {
        return Err(DockerError::bad_request("config has no Image"));
    }
    Ok((config, warnings))
}

/// Docker's `Config.Healthcheck` as ours: durations from nanoseconds to milliseconds,
/// Docker's checks (a duration under a millisecond, negative retries, an unknown test kind)
/// refused with 400.
pub fn healthcheck_of(h: &m::HealthConfig) -> DResult<v1::Healthcheck> {
    let test = h.test.clone().unwrap_or_default();
    match test.first().map(String::as_str) {
        None | Some("NONE") => {}
        Some("CMD" | "CMD-SHELL") if test.len() >= 2 => {}
        Some("CMD" | "CMD-SHELL") => {
            return Err(DockerError::bad_request(format!(
                "invalid healthcheck test {test:?}: {} needs a command",
                test[0]
            )));
        }
        Some(other) => {
            return Err(DockerError::bad_request(format!(
                "invalid healthcheck test kind {other:?}: expected NONE, CMD or CMD-SHELL"
            )));
        }
    }
    let ms = |field: &str, ns: Option<i64>| -> DResult<u64> {
        match ns.unwrap_or(0) {
            0 => Ok(0),
            n if n < 1_000_000 => Err(DockerError::bad_request(format!(
                "Healthcheck.{field} in ns must be 0 or at least 1000000 (1ms)"
            ))),
            n => Ok((n / 1_000_000) as u64),
        }
    };
    let retries = h.retries.unwrap_or(0);
    if retries < 0 {
        return Err(DockerError::bad_request(
            "Healthcheck.Retries must not be negative",
        ));
    }
    Ok(v1::Healthcheck {
        test,
        interval_ms: ms("Interval", h.interval)?,
        timeout_ms: ms("Timeout", h.timeout)?,
        start_period_ms: ms("StartPeriod", h.start_period)?,
        retries: u32::try_from(retries).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    fn body(j: serde_json::Value) -> m::ContainerCreateBody {
        serde_json::from_value(j).expect("body parses")
    }

    #[test]
    fn a_docker_healthcheck_becomes_ours() {
        let h: m::HealthConfig = serde_json::from_value(json!({
            "Test": ["CMD-SHELL", "wget -q -O- localhost"],
            "Interval": 1_000_000_000i64,
            "Timeout": 2_500_000_000i64,
            "StartPeriod": 0,
            "Retries": 4
        }))
        .expect("parses");
        let ours = healthcheck_of(&h).expect("valid");
        assert_eq!(ours.test, ["CMD-SHELL", "wget -q -O- localhost"]);
        assert_eq!(ours.interval_ms, 1000);
        assert_eq!(ours.timeout_ms, 2500);
        assert_eq!(ours.start_period_ms, 0);
        assert_eq!(ours.retries, 4);
        let none: m::HealthConfig =
            serde_json::from_value(json!({"Test": ["NONE"]})).expect("parses");
        assert_eq!(healthcheck_of(&none).expect("valid").test, ["NONE"]);
        let bad: m::HealthConfig =
            serde_json::from_value(json!({"Test": ["SHELL", "x"]})).expect("parses");
        let e = healthcheck_of(&bad).expect_err("unknown kind");
        assert!(e.message.contains("\"SHELL\""), "{}", e.message);
        let tiny: m::HealthConfig =
            serde_json::from_value(json!({"Test": ["CMD", "true"], "Interval": 5}))
                .expect("parses");
        let e = healthcheck_of(&tiny).expect_err("under a millisecond");
        assert!(e.message.contains("Interval"), "{}", e.message);
    }

    #[test]
    fn the_clis_create_body_becomes_our_config() {
        let b = body(json!({
            "Image": "busybox",
            "Cmd": ["httpd", "-f"],
            "Env": ["A=1"],
            "Labels": {"k": "v"},
            "Tty": true,
            "OpenStdin": true,
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {
                "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
                "Binds": ["/tmp:/data:ro", "vol:/v"],
                "AutoRemove": true,
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "Memory": 536870912,
                "NanoCpus": 2000000000,
                "NetworkMode": "default",
                "LogConfig": {"Type": "", "Config": {}}
            }
        }));
        let (c, w) = translate(&b, Some("web"), None).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.id, "web");
        let p = c.process.clone().unwrap();
        assert_eq!(p.command, ["httpd", "-f"]);
        assert!(p.tty && p.stdin_open);
        assert_eq!(c.ports.len(), 1);
        assert_eq!(c.ports[0].host_port, 8080);
        assert_eq!(c.ports[0].host_ip, "127.0.0.1");
        assert_eq!(c.ports[0].container_port, 80);
        assert_eq!(c.mounts.len(), 2);
        assert!(c.mounts[0].readonly);
        assert!(matches!(&c.mounts[1].kind, Some(v1::mount::Kind::Volume(v)) if v.name == "vol"));
        assert!(c.auto_remove);
        assert_eq!(c.resources.unwrap().memory_bytes, 512 << 20);
        assert_eq!(c.resources.unwrap().cpus_millis, 2000);
        assert!(c.networks.is_empty());
        assert_eq!(c.labels[0].key, "k");
    }

    #[test]
    fn an_entrypoint_list_puts_its_tail_before_the_command() {
        let b = body(json!({"Image": "x", "Entrypoint": ["sh", "-c"], "Cmd": ["echo hi"]}));
        let (c, _) = translate(&b, None, None).unwrap();
        let p = c.process.unwrap();
        assert_eq!(p.entrypoint.as_deref(), Some("sh"));
        assert_eq!(p.command, ["-c", "echo hi"]);
        let b = body(json!({"Image": "x", "Entrypoint": []}));
        assert_eq!(
            translate(&b, None, None)
                .unwrap()
                .0
                .process
                .unwrap()
                .entrypoint
                .as_deref(),
            Some("")
        );
    }

    #[test]
    fn fields_that_change_meaning_are_refused_by_name() {
        for (hc, field) in [
            (json!({"Privileged": true}), "HostConfig.Privileged"),
            (
                json!({"Devices": [{"PathOnHost": "/dev/kvm"}]}),
                "HostConfig.Devices",
            ),
            (json!({"NetworkMode": "host"}), "HostConfig.NetworkMode"),
            (json!({"PidMode": "host"}), "HostConfig.PidMode"),
            (
                json!({"SecurityOpt": ["seccomp=unconfined"]}),
                "HostConfig.SecurityOpt",
            ),
        ] {
            let b = body(json!({"Image": "x", "HostConfig": hc}));
            let e = translate(&b, None, None).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with(field), "{}", e.message);
        }
        // Zero values, as compose sends them, are not a request.
        let b = body(
            json!({"Image": "x", "HostConfig": {"Privileged": false, "Devices": [], "CpuShares": 0, "PidMode": ""}}),
        );
        assert!(translate(&b, None, None).is_ok());
    }
}
