//! The Docker verbs around a container's life: restart, attach, wait, port, top, rename,
//! pause and unpause.

use api::v1::{self, stdio_request::Request, stdio_response::Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wire::v1::stdio_output::Output;

use crate::Context;
use crate::args::{
    AttachArgs, PauseArgs, PortArgs, RenameArgs, RestartArgs, TopArgs, UnpauseArgs, WaitArgs,
};
use crate::commands::container::{each, each_printed, inspect_one, signal_number};
use crate::error::{CliError, CliResult};
use crate::stdio::{self, StdioOptions};

/// `container restart`: stop (the container's stop signal and timeout unless given), then
/// start; a stopped container is just started.
pub async fn restart_cmd(ctx: &Context, a: &RestartArgs) -> CliResult {
    let signal = a
        .signal
        .as_deref()
        .map(signal_number)
        .transpose()?
        .unwrap_or(0);
    let client = ctx.client().await?;
    each_printed(&client, &a.ids, |client, id| async move {
        client
            .containers()
            .stop(v1::StopContainerRequest {
                id: id.clone(),
                signal,
                timeout_seconds: a.time,
            })
            .await?;
        client
            .containers()
            .start(v1::StartContainerRequest { id })
            .await?;
        Ok(())
    })
    .await
}

/// `container attach`: the running container's output (and, unless `--no-stdin`, our
/// stdin when it was created with `-i`), until it exits; exits with its code.
pub async fn attach_cmd(ctx: &Context, a: &AttachArgs) -> CliResult {
    let detach_keys = stdio::detach_keys(a.detach_keys.as_deref())?;
    let client = ctx.client().await?;
    let info = inspect_one(&client, &a.id).await?;
    if info.state_enum() != v1::ContainerState::Running {
        return Err(CliError::Usage(format!(
            "you cannot attach to a stopped container {}: start it first",
            a.id
        )));
    }
    let process = info
        .config
        .as_ref()
        .and_then(|c| c.process.clone())
        .unwrap_or_default();
    let options = StdioOptions {
        stdin: !a.no_stdin && process.stdin_open,
        tty: process.tty,
        detach: false,
        detach_keys,
    };
    stdio::attach(&client, info.id.clone(), false, options)
        .await
        .map(stdio::Ended::code)
}

/// `container wait`: blocks until each container stops, printing its exit code.
pub async fn wait_cmd(ctx: &Context, a: &WaitArgs) -> CliResult {
    let client = ctx.client().await?;
    each(&a.ids, |id| {
        let client = client.clone();
        async move {
            let code = client
                .containers()
                .wait(v1::WaitContainerRequest {
                    id,
                    condition: v1::WaitCondition::NotRunning as i32,
                })
                .await?
                .into_inner()
                .exit_code;
            outln!("{code}");
            Ok(())
        }
    })
    .await
}

/// One published port as `docker port` prints it: (`80/tcp`, `0.0.0.0:32768`). Ports whose
/// host port the daemon did not record (a `-p 80` without one) are left out.
pub fn port_lines(config: &v1::ContainerConfig) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for p in &config.ports {
        if p.host_port == 0 {
            continue;
        }
        let proto = if p.protocol == v1::Protocol::Udp as i32 {
            "udp"
        } else {
            "tcp"
        };
        let ip = match p.host_ip.as_str() {
            "" => "0.0.0.0".to_owned(),
            "localhost" => "127.0.0.1".to_owned(),
            ip if ip.contains(':') => format!("[{ip}]"),
            ip => ip.to_owned(),
        };
        for i in 0..p.count.max(1) {
            lines.push((
                format!("{}/{proto}", p.container_port + i),
                format!("{ip}:{}", p.host_port + i),
            ));
        }
    }
    lines.sort_by_key(|(private, _)| {
        let (port, proto) = private.split_once('/').unwrap_or((private, ""));
        (port.parse::<u32>().unwrap_or(0), proto.to_owned())
    });
    lines
}

/// `container port`: every mapping as `80/tcp -> 0.0.0.0:32768`, or for one private port
/// only the host addresses.
pub async fn port_cmd(ctx: &Context, a: &PortArgs) -> CliResult {
    let wanted = a
        .port
        .as_deref()
        .map(|p| {
            let (first, last, proto) = spec::parse_expose(p).map_err(CliError::usage)?;
            if first != last {
                return Err(CliError::Usage(format!(
                    "port {p}: give one port, not a range"
                )));
            }
            Ok(format!("{first}/{proto}"))
        })
        .transpose()?;
    let client = ctx.client().await?;
    let info = inspect_one(&client, &a.id).await?;
    let lines = port_lines(&info.config.unwrap_or_default());
    match wanted {
        None => {
            for (private, public) in &lines {
                outln!("{private} -> {public}");
            }
        }
        Some(w) => {
            let hits: Vec<_> = lines.iter().filter(|(p, _)| *p == w).collect();
            if hits.is_empty() {
                return Err(CliError::Usage(format!(
                    "no public port {w} published for {}",
                    a.id
                )));
            }
            for (_, public) in hits {
                outln!("{public}");
            }
        }
    }
    Ok(0)
}

/// What `top` runs in the container when no ps options are given (Docker's /top default).
pub const TOP_DEFAULT_ARGS: [&str; 2] = ["-o", "pid,ppid,user,args"];

/// `container top`: the container's `ps` (the guest's process table as the container sees
/// it), without the line of that `ps` itself.
pub async fn top_cmd(ctx: &Context, a: &TopArgs) -> CliResult {
    let mut args = vec!["ps".to_owned()];
    if a.ps_args.is_empty() {
        args.extend(TOP_DEFAULT_ARGS.map(str::to_owned));
    } else {
        args.extend(a.ps_args.iter().cloned());
    }
    let client = ctx.client().await?;
    let (tx, rx) = mpsc::channel(2);
    tx.send(v1::StdioRequest {
        request: Some(Request::Exec(v1::ExecOpen {
            id: a.id.clone(),
            args: args.clone(),
            ..Default::default()
        })),
    })
    .await
    .map_err(|_| CliError::Daemon("stdio stream closed before it opened".into()))?;
    let mut output = client
        .containers()
        .exec(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = loop {
        match output.message().await? {
            Some(v1::StdioResponse {
                response: Some(Response::Output(frame)),
            }) => match frame.output {
                Some(Output::Stdout(d)) => out.extend(d),
                Some(Output::Stderr(d)) => err.extend(d),
                Some(Output::ExitCode(code)) => break code,
                None => {}
            },
            Some(_) => {}
            None => break -1,
        }
    };
    drop(tx);
    if code != 0 {
        return Err(CliError::Daemon(format!(
            "running ps in container {}: exit code {code}: {}",
            a.id,
            String::from_utf8_lossy(&err).trim()
        )));
    }
    let ours = args.join(" ");
    for line in String::from_utf8_lossy(&out).lines() {
        if line.trim_end().ends_with(&ours) {
            continue;
        }
        outln!("{line}");
    }
    Ok(0)
}

/// `container rename`.
pub async fn rename_cmd(ctx: &Context, a: &RenameArgs) -> CliResult {
    spec::validate_container_name(&a.name).map_err(CliError::usage)?;
    let client = ctx.client().await?;
    client
        .containers()
        .rename(v1::RenameContainerRequest {
            id: a.id.clone(),
            name: a.name.clone(),
        })
        .await?;
    Ok(0)
}

/// `container pause`.
pub async fn pause_cmd(ctx: &Context, a: &PauseArgs) -> CliResult {
    let client = ctx.client().await?;
    each_printed(&client, &a.ids, |client, id| async move {
        client
            .containers()
            .pause(v1::PauseContainerRequest { id })
            .await?;
        Ok(())
    })
    .await
}

/// `container unpause`.
pub async fn unpause_cmd(ctx: &Context, a: &UnpauseArgs) -> CliResult {
    let client = ctx.client().await?;
    each_printed(&client, &a.ids, |client, id| async move {
        client
            .containers()
            .unpause(v1::UnpauseContainerRequest { id })
            .await?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_print_as_docker_port_does() {
        let config = v1::ContainerConfig {
            ports: vec![
                v1::PortMapping {
                    host_ip: String::new(),
                    host_port: 8080,
                    container_port: 80,
                    count: 1,
                    protocol: v1::Protocol::Tcp as i32,
                },
                v1::PortMapping {
                    host_ip: "127.0.0.1".into(),
                    host_port: 5300,
                    container_port: 53,
                    count: 2,
                    protocol: v1::Protocol::Udp as i32,
                },
                v1::PortMapping {
                    host_ip: String::new(),
                    host_port: 0,
                    container_port: 9000,
                    count: 1,
                    protocol: v1::Protocol::Tcp as i32,
                },
            ],
            ..Default::default()
        };
        let lines: Vec<String> = port_lines(&config)
            .into_iter()
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect();
        assert_eq!(
            lines,
            [
                "53/udp -> 127.0.0.1:5300",
                "54/udp -> 127.0.0.1:5301",
                "80/tcp -> 0.0.0.0:8080"
            ]
        );
    }
}
