//! `container build --secret/--ssh` values and `container builder start|status|stop|delete`.

use std::collections::HashMap;

use api::v1;

use crate::Context;
use crate::args::{BuilderStartArgs, BuilderStatusArgs};
use crate::error::{CliError, CliResult};

/// `--secret id=X[,src=PATH|,env=VAR][,type=file|env]` (Docker's spelling; `source=` and
/// `required` are accepted too): the id and its value, read here. Without src or env the
/// value comes from the environment variable named like the id, as Docker does.
pub fn parse_secret(
    spec: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<u8>), CliError> {
    let bad = |why: &str| CliError::Usage(format!("--secret {spec:?}: {why}"));
    let (mut id, mut src, mut var, mut kind) = (None, None, None, None);
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad("expected key=value pairs"))?;
        match k {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => var = Some(v.to_string()),
            "type" => kind = Some(v.to_string()),
            _ => return Err(bad(&format!("unknown key {k:?}"))),
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("an id is required"))?;
    let from_env = |name: &str| {
        env(name)
            .map(String::into_bytes)
            .ok_or_else(|| bad(&format!("the environment variable {name} is not set")))
    };
    let value = match (kind.as_deref(), src, var) {
        (Some("env"), Some(name), None) | (_, None, Some(name)) => from_env(&name)?,
        (Some("file") | None, Some(path), None) => {
            std::fs::read(&path).map_err(|e| bad(&format!("reading {path}: {e}")))?
        }
        (None, None, None) => match env(&id) {
            Some(v) => v.into_bytes(),
            None => return Err(bad("give src=PATH or env=VAR")),
        },
        (Some("env"), None, None) => from_env(&id)?,
        (Some(t), _, _) if t != "file" && t != "env" => {
            return Err(bad(&format!("unknown type {t:?}")));
        }
        _ => return Err(bad("give either src or env, not both")),
    };
    Ok((id, value))
}

/// `--ssh default|ID[=PATH]`: the agent socket for an id (`default` without a path is
/// `$SSH_AUTH_SOCK`).
pub fn parse_ssh(
    spec: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, String), CliError> {
    let (id, path) = match spec.split_once('=') {
        Some((id, path)) => (id.to_string(), path.to_string()),
        None => {
            let path = env("SSH_AUTH_SOCK").ok_or_else(|| {
                CliError::Usage(format!(
                    "--ssh {spec}: SSH_AUTH_SOCK is not set; give {spec}=PATH"
                ))
            })?;
            (spec.to_string(), path)
        }
    };
    if id.is_empty() || path.is_empty() {
        return Err(CliError::Usage(format!(
            "--ssh {spec:?}: expected default|ID[=PATH]"
        )));
    }
    let absolute =
        std::path::absolute(&path).map_err(|e| CliError::Usage(format!("--ssh {spec}: {e}")))?;
    Ok((id, absolute.display().to_string()))
}

/// A build's secret values by id, and its SSH agent sockets by id.
pub type SecretsAndAgents = (HashMap<String, Vec<u8>>, HashMap<String, String>);

/// The `--secret` and `--ssh` values of a build.
pub fn secrets_and_agents(
    secrets: &[String],
    ssh: &[String],
) -> Result<SecretsAndAgents, CliError> {
    let env = |k: &str| std::env::var(k).ok();
    let secrets = secrets
        .iter()
        .map(|s| parse_secret(s, &env))
        .collect::<Result<HashMap<_, _>, _>>()?;
    let ssh = ssh
        .iter()
        .map(|s| parse_ssh(s, &env))
        .collect::<Result<HashMap<_, _>, _>>()?;
    Ok((secrets, ssh))
}

fn show(s: &v1::BuilderStatus) -> Result<(), CliError> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    if s.running {
        outln!("builder: running (pid {})", s.pid);
        outln!("cpus: {}", s.cpus);
        outln!("memory: {:.1} GiB", gib(s.memory_bytes));
        outln!("layers: {}", s.layers);
        outln!("steps: {}", s.steps);
    } else {
        outln!("builder: stopped");
    }
    outln!("cache mounts: {} bytes", s.cache_bytes);
    Ok(())
}

/// `container builder start`.
pub async fn start(ctx: &Context, a: &BuilderStartArgs) -> CliResult {
    let memory_bytes = match &a.memory {
        None => 0,
        Some(t) => t
            .parse::<spec::ByteSize>()
            .map(spec::ByteSize::bytes)
            .map_err(|e| CliError::Usage(format!("--memory: {e}")))?,
    };
    let client = ctx.client().await?;
    let s = client
        .builds()
        .start_builder(v1::StartBuilderRequest {
            cpus: a.cpus.unwrap_or(0),
            memory_bytes,
        })
        .await?
        .into_inner();
    show(&s)?;
    Ok(0)
}

/// `container builder status`.
pub async fn status(ctx: &Context, _: &BuilderStatusArgs) -> CliResult {
    let client = ctx.client().await?;
    let s = client
        .builds()
        .builder_status(v1::BuilderStatusRequest {})
        .await?
        .into_inner();
    show(&s)?;
    Ok(0)
}

/// `container builder stop`.
pub async fn stop(ctx: &Context, _: &BuilderStatusArgs) -> CliResult {
    let client = ctx.client().await?;
    let s = client
        .builds()
        .stop_builder(v1::BuilderStatusRequest {})
        .await?
        .into_inner();
    show(&s)?;
    Ok(0)
}

/// `container builder delete`.
pub async fn delete(ctx: &Context, _: &BuilderStatusArgs) -> CliResult {
    let client = ctx.client().await?;
    let s = client
        .builds()
        .delete_builder(v1::BuilderStatusRequest {})
        .await?
        .into_inner();
    show(&s)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "TOK" => Some("from-env".into()),
            "SSH_AUTH_SOCK" => Some("/tmp/agent.sock".into()),
            _ => None,
        }
    }

    #[test]
    fn secrets_come_from_files_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, b"file-value").unwrap();
        let spec = format!("id=tok,src={}", f.display());
        assert_eq!(
            parse_secret(&spec, &env).unwrap(),
            ("tok".to_string(), b"file-value".to_vec())
        );
        assert_eq!(
            parse_secret("id=a,env=TOK", &env).unwrap(),
            ("a".to_string(), b"from-env".to_vec())
        );
        assert_eq!(parse_secret("id=TOK", &env).unwrap().1, b"from-env");
        let e = parse_secret("src=/x", &env).unwrap_err().to_string();
        assert!(e.contains("an id is required"), "{e}");
        let e = parse_secret("id=a,env=MISSING", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MISSING is not set"), "{e}");
        let e = parse_secret("id=a,src=/no/such/file", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("reading /no/such/file"), "{e}");
    }

    #[test]
    fn ssh_default_is_the_agent_of_the_environment() {
        assert_eq!(
            parse_ssh("default", &env).unwrap(),
            ("default".to_string(), "/tmp/agent.sock".to_string())
        );
        assert_eq!(
            parse_ssh("key=/k.sock", &env).unwrap(),
            ("key".to_string(), "/k.sock".to_string())
        );
        let none = |_: &str| None;
        let e = parse_ssh("default", &none).unwrap_err().to_string();
        assert!(e.contains("SSH_AUTH_SOCK is not set"), "{e}");
    }
}
