//! The config of an image made by `commit`: the base image's config under the container's
//! own settings, then the `--change` instructions (parsed by the Dockerfile frontend, so a
//! change means what the same Dockerfile line means), then the new layer and history entry.
//! Pure: it edits JSON and knows no store.

use api::ApiError;
use dockerfile::instruction::Healthcheck;
use dockerfile::{Command, CommandLine};
use serde_json::{Map, Value, json};

/// The instructions `--change` accepts, as Docker's `commit` does.
const ALLOWED: [&str; 10] = [
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "USER",
    "WORKDIR",
    "VOLUME",
    "STOPSIGNAL",
    "HEALTHCHECK",
];

/// Parses each change as one Dockerfile line; anything but the allowed instructions is
/// refused with one line naming it.
pub fn parse_changes(changes: &[String]) -> Result<Vec<Command>, ApiError> {
    let mut out = Vec::new();
    for change in changes {
        let parsed = dockerfile::Dockerfile::parse("--change", change)
            .map_err(|e| ApiError::invalid_argument(format!("invalid change {change:?}: {e}")))?;
        for i in parsed.instructions {
            let keyword = i.command.keyword();
            if !ALLOWED.contains(&keyword) {
                return Err(ApiError::invalid_argument(format!(
                    "{keyword} is not a valid change command"
                )));
            }
            out.push(i.command);
        }
    }
    Ok(out)
}

fn section(config: &mut Value) -> &mut Map<String, Value> {
    if !config.is_object() {
        *config = json!({});
    }
    let Some(top) = config.as_object_mut() else {
        unreachable!("made an object above")
    };
    let c = top.entry("config").or_insert_with(|| json!({}));
    if !c.is_object() {
        *c = json!({});
    }
    match c.as_object_mut() {
        Some(m) => m,
        None => unreachable!("made an object above"),
    }
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

/// Sets `key=value` in an `Env` list, replacing the variable of that name.
fn set_env(c: &mut Map<String, Value>, var: &str) {
    let name = var.split('=').next().unwrap_or(var);
    let env = c.entry("Env").or_insert_with(|| json!([]));
    if !env.is_array() {
        *env = json!([]);
    }
    if let Some(list) = env.as_array_mut() {
        // A variable set again keeps its place, as Docker's ENV does.
        let same = |e: &Value| e.as_str().and_then(|s| s.split('=').next()) == Some(name);
        match list.iter().position(same) {
            Some(i) => list[i] = Value::String(var.to_string()),
            None => list.push(Value::String(var.to_string())),
        }
    }
}

fn set_in_object(c: &mut Map<String, Value>, field: &str, key: &str, value: Value) {
    let o = c.entry(field).or_insert_with(|| json!({}));
    if !o.is_object() {
        *o = json!({});
    }
    if let Some(m) = o.as_object_mut() {
        m.insert(key.to_string(), value);
    }
}

/// The container's own settings over the image's: its environment, command, entrypoint,
/// working directory, user and labels, as `docker commit` keeps the container's config.
pub fn apply_container(config: &mut Value, options: &api::v1::ContainerConfig) {
    let c = section(config);
    if let Some(p) = &options.process {
        for var in &p.env {
            set_env(c, var);
        }
        if let Some(ep) = &p.entrypoint {
            let v: Vec<String> = if ep.is_empty() {
                Vec::new()
            } else {
                vec![ep.clone()]
            };
            c.insert("Entrypoint".into(), strings(&v));
            // A new entrypoint drops the image's cmd unless the user gave one.
            if p.command.is_empty() {
                c.insert("Cmd".into(), Value::Null);
            }
        }
        if !p.command.is_empty() {
            c.insert("Cmd".into(), strings(&p.command));
        }
        if !p.working_dir.is_empty() {
            c.insert("WorkingDir".into(), Value::String(p.working_dir.clone()));
        }
        if !p.user.is_empty() {
            c.insert("User".into(), Value::String(p.user.clone()));
        }
    }
    for l in &options.labels {
        set_in_object(c, "Labels", &l.key, Value::String(l.value.clone()));
    }
}

fn command_line(cl: &CommandLine) -> Vec<String> {
    match cl {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
    }
}

/// Applies parsed `--change` instructions in order.
/// Expands the words of one change with `env` (the config's `KEY=value` list so far), as
/// Docker's commit does for the instructions its builder expands (ENV, LABEL, WORKDIR,
/// USER, EXPOSE, VOLUME, STOPSIGNAL): `ENV PATH=$PATH:/x` extends the container's PATH.
/// CMD, ENTRYPOINT and HEALTHCHECK are kept as written.
pub fn expand_change(change: &Command, env: &[String]) -> Result<Command, ApiError> {
    use dockerfile::instruction::KeyValue;
    let lookup = |name: &str| -> Option<String> {
        env.iter().rev().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let lexer = dockerfile::expand::Lexer::default();
    let word = |text: &str| -> Result<String, ApiError> {
        lexer
            .word(text, &lookup)
            .map(|e| e.value)
            .map_err(|e| ApiError::invalid_argument(format!("invalid change {text:?}: {e}")))
    };
    let pairs = |kvs: &[KeyValue]| -> Result<Vec<KeyValue>, ApiError> {
        kvs.iter()
            .map(|kv| {
                Ok(KeyValue {
                    key: word(&kv.key)?,
                    value: word(&kv.value)?,
                })
            })
            .collect()
    };
    Ok(match change {
        Command::Env(kvs) => Command::Env(pairs(kvs)?),
        Command::Label(kvs) => Command::Label(pairs(kvs)?),
        Command::Workdir(w) => Command::Workdir(word(w)?),
        Command::User(u) => Command::User(word(u)?),
        Command::StopSignal(s) => Command::StopSignal(word(s)?),
        Command::Volume(v) => Command::Volume(v.iter().map(|p| word(p)).collect::<Result<_, _>>()?),
        Command::Expose(ports) => {
            let mut out = Vec::new();
            for p in ports {
                let e = lexer.words(p, &lookup).map_err(|e| {
                    ApiError::invalid_argument(format!("invalid change {p:?}: {e}"))
                })?;
                out.extend(e.value);
            }
            Command::Expose(out)
        }
        other => other.clone(),
    })
}

/// Applies the changes in order, each expanded with the environment the ones before it
/// left (see [`expand_change`]).
pub fn apply_changes(config: &mut Value, changes: &[Command]) -> Result<(), ApiError> {
    let c = section(config);
    for change in changes {
        let env: Vec<String> = c
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let change = &expand_change(change, &env)?;
        match change {
            Command::Cmd(cl) => {
                c.insert("Cmd".into(), strings(&command_line(cl)));
            }
            Command::Entrypoint(cl) => {
                c.insert("Entrypoint".into(), strings(&command_line(cl)));
            }
            Command::Env(kvs) => {
                for kv in kvs {
                    set_env(c, &format!("{}={}", kv.key, kv.value));
                }
            }
            Command::Label(kvs) => {
                for kv in kvs {
                    set_in_object(c, "Labels", &kv.key, Value::String(kv.value.clone()));
                }
            }
            Command::Expose(ports) => {
                for p in ports {
                    let p = if p.contains('/') {
                        p.clone()
                    } else {
                        format!("{p}/tcp")
                    };
                    set_in_object(c, "ExposedPorts", &p, json!({}));
                }
            }
            Command::Volume(paths) => {
                for p in paths {
                    set_in_object(c, "Volumes", p, json!({}));
                }
            }
            Command::User(u) => {
                c.insert("User".into(), Value::String(u.clone()));
            }
            Command::Workdir(w) => {
                let current = c
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string();
                let dir = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{w}", current.trim_end_matches('/'))
                };
                c.insert("WorkingDir".into(), Value::String(dir));
            }
            Command::StopSignal(s) => {
                c.insert("StopSignal".into(), Value::String(s.clone()));
            }
            Command::Healthcheck(Healthcheck::None) => {
                c.insert("Healthcheck".into(), json!({ "Test": ["NONE"] }));
            }
            Command::Healthcheck(Healthcheck::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                let test = match test {
                    CommandLine::Exec(v) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        t
                    }
                    CommandLine::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                };
                let mut h = json!({ "Test": test });
                let ns =
                    |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as u64).unwrap_or(0);
                for (k, v) in [
                    ("Interval", ns(interval)),
                    ("Timeout", ns(timeout)),
                    ("StartPeriod", ns(start_period)),
                    ("StartInterval", ns(start_interval)),
                ] {
                    if v != 0 {
                        h[k] = json!(v);
                    }
                }
                if let Some(r) = retries {
                    h["Retries"] = json!(r);
                }
                c.insert("Healthcheck".into(), h);
            }
            // parse_changes lets nothing else through.
            _ => {}
        }
    }
    Ok(())
}

/// Appends the new layer's diff id and the history entry, and stamps the image.
pub fn finish(
    config: &mut Value,
    diff_id: &str,
    created: &str,
    created_by: &str,
    author: &str,
    comment: &str,
) {
    let _ = section(config);
    let Some(top) = config.as_object_mut() else {
        return;
    };
    let rootfs = top
        .entry("rootfs")
        .or_insert_with(|| json!({ "type": "layers", "diff_ids": [] }));
    if rootfs.get("diff_ids").and_then(Value::as_array).is_none() {
        rootfs["diff_ids"] = json!([]);
    }
    if let Some(ids) = rootfs["diff_ids"].as_array_mut() {
        ids.push(Value::String(diff_id.to_string()));
    }
    let mut entry = json!({ "created": created, "created_by": created_by });
    if !author.is_empty() {
        entry["author"] = json!(author);
        top.insert("author".into(), json!(author));
    }
    if !comment.is_empty() {
        entry["comment"] = json!(comment);
    }
    let history = top.entry("history").or_insert_with(|| json!([]));
    if let Some(h) = history.as_array_mut() {
        h.push(entry);
    }
    top.insert("created".into(), json!(created));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_edit_the_config_as_a_dockerfile_would() {
        let mut config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Env": ["PATH=/bin", "A=old"], "Cmd": ["sh"] },
            "rootfs": { "type": "layers", "diff_ids": ["sha256:aa"] },
            "history": [{ "created_by": "base" }]
        });
        let changes = parse_changes(&[
            "CMD [\"/bin/app\", \"-v\"]".into(),
            "ENV A=new B=2".into(),
            "EXPOSE 80 53/udp".into(),
            "LABEL team=core".into(),
            "WORKDIR /srv".into(),
            "WORKDIR data".into(),
            "USER 1000:1000".into(),
            "VOLUME /cache".into(),
            "STOPSIGNAL SIGINT".into(),
            "HEALTHCHECK --interval=5s CMD true".into(),
        ])
        .unwrap();
        apply_changes(&mut config, &changes).unwrap();
        finish(
            &mut config,
            "sha256:bb",
            "2026-12-04T20:00:00Z",
            "sh -c x",
            "me",
            "msg",
        );
        let c = &config["config"];
        assert_eq!(c["Cmd"], json!(["/bin/app", "-v"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=new", "B=2"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Labels"], json!({"team": "core"}));
        assert_eq!(c["WorkingDir"], json!("/srv/data"));
        assert_eq!(c["User"], json!("1000:1000"));
        assert_eq!(c["Volumes"], json!({"/cache": {}}));
        assert_eq!(c["StopSignal"], json!("SIGINT"));
        assert_eq!(
            c["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64})
        );
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!(["sha256:aa", "sha256:bb"])
        );
        assert_eq!(
            config["history"][1],
            json!({"created": "2026-12-04T20:00:00Z", "created_by": "sh -c x",
                   "author": "me", "comment": "msg"})
        );
        assert_eq!(config["author"], json!("me"));
    }

    #[test]
    fn changes_are_expanded_with_the_containers_env() {
        let mut config = json!({
            "config": { "Env": ["PATH=/usr/bin:/bin", "HOME=/root"], "Cmd": ["sh"] }
        });
        let changes = parse_changes(&[
            "ENV PATH=$PATH:/x APP=\"my app\"".into(),
            "ENV LOG=${APP:-none}/log".into(),
            "WORKDIR $HOME/work".into(),
            "LABEL home=$HOME unset=${NOPE:-dflt}".into(),
            "EXPOSE ${PORT:-8080}".into(),
            "CMD echo $HOME".into(),
        ])
        .unwrap();
        apply_changes(&mut config, &changes).unwrap();
        let c = &config["config"];
        assert_eq!(
            c["Env"],
            json!([
                "PATH=/usr/bin:/bin:/x",
                "HOME=/root",
                "APP=my app",
                "LOG=my app/log"
            ])
        );
        assert_eq!(c["WorkingDir"], "/root/work");
        assert_eq!(c["Labels"], json!({"home": "/root", "unset": "dflt"}));
        assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
        // CMD keeps its words for the shell.
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo $HOME"]));
        let bad = parse_changes(&["ENV A=${B:?unset}".into()]).unwrap();
        let e = apply_changes(&mut config, &bad).unwrap_err();
        assert!(e.message.starts_with("invalid change"), "{}", e.message);
    }

    #[test]
    fn other_instructions_are_refused() {
        let e = parse_changes(&["RUN rm -rf /".into()]).unwrap_err();
        assert_eq!(e.message, "RUN is not a valid change command");
        let e = parse_changes(&["FORM x".into()]).unwrap_err();
        assert!(
            e.message.starts_with("invalid change \"FORM x\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_containers_settings_come_first() {
        let mut config = json!({"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}});
        let options = api::v1::ContainerConfig {
            process: Some(api::v1::ProcessConfig {
                env: vec!["X=1".into()],
                command: vec!["top".into()],
                working_dir: "/w".into(),
                ..Default::default()
            }),
            labels: vec![api::v1::Label {
                key: "k".into(),
                value: "v".into(),
            }],
            ..Default::default()
        };
        apply_container(&mut config, &options);
        let c = &config["config"];
        assert_eq!(c["Env"], json!(["PATH=/bin", "X=1"]));
        assert_eq!(c["Cmd"], json!(["top"]));
        assert_eq!(c["WorkingDir"], json!("/w"));
        assert_eq!(c["Labels"], json!({"k": "v"}));
    }
}
