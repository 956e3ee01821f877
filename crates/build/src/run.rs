//! `RUN`: turning a RUN instruction plus its stage's state into a [`RunStep`] for the
//! caller's [`crate::StepRunner`] (the command line through SHELL, the environment with the
//! build args in scope, the user and working directory, the network mode and the mounts),
//! or taking its layer from the cache.

use std::collections::HashMap;

use dockerfile::BuildPlan;
use dockerfile::instruction::{CommandLine, NetworkMode, Run, Security};
use dockerfile::mount::{Mount, MountType};

use crate::cache::{Entry, Key};
use crate::config::ImageConfig;
use crate::copy::CopyError;
use crate::exec::{BuildOptions, Event, State, now_rfc3339};
use crate::layer::Layer;
use crate::step::{BindFrom, CacheSeed, RunStep, SecretEnv, StepMount, StepMountKind};
use crate::{Build, BuildError, ErrorKind, Result};

/// The command line a RUN executes: exec form as is, shell form through the stage's SHELL,
/// heredoc bodies fed to the shell as the Dockerfile frontend does.
pub fn command(run: &Run, config: &ImageConfig) -> Vec<String> {
    match &run.command {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(text) if run.heredocs.is_empty() => {
            config.command(&CommandLine::Shell(text.clone()))
        }
        CommandLine::Shell(text) => {
            // `RUN <<EOF` alone: the body is the script.
            let only_heredoc = text.split_whitespace().all(|w| {
                w.trim_start_matches(|c: char| c.is_ascii_digit())
                    .starts_with("<<")
            });
            if only_heredoc && run.heredocs.len() == 1 {
                let mut v = config.shell();
                v.push(run.heredocs[0].content.clone());
                return v;
            }
            let mut script = text.clone();
            for h in &run.heredocs {
                script.push('\n');
                script.push_str(&h.content);
                script.push_str(&h.name);
            }
            config.command(&CommandLine::Shell(script))
        }
    }
}

/// The history `created_by` BuildKit writes for a RUN: `RUN [|N K=V...] <command> # buildkit`.
pub fn created_by(args: &[String], build_args: &[(String, String)]) -> String {
    let mut out = String::from("RUN ");
    if !build_args.is_empty() {
        out.push_str(&format!("|{} ", build_args.len()));
        for (k, v) in build_args {
            out.push_str(&format!("{k}={v} "));
        }
    }
    out.push_str(&args.join(" "));
    out.push_str(" # buildkit");
    out
}

/// The environment of a step: the build args in scope, then the image's (which wins).
pub fn environment(config: &ImageConfig, build_args: &[(String, String)]) -> Vec<String> {
    let image = config.env();
    let mut env: Vec<String> = build_args
        .iter()
        .filter(|(k, _)| !image.iter().any(|(ik, _)| ik == k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(image.into_iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// Checks the flags this executor cannot honour.
pub fn check_flags(run: &Run) -> std::result::Result<(), String> {
    if run.network == Some(NetworkMode::Host) {
        return Err("--network=host is not supported: steps run in the builder VM".into());
    }
    if run.security == Some(Security::Insecure) {
        return Err("--security=insecure is not supported".into());
    }
    Ok(())
}

/// The default target of a mount that names none.
pub fn mount_target(m: &Mount) -> Option<String> {
    match (&m.target, m.kind) {
        (Some(t), _) => Some(t.clone()),
        // `env=` without a target exposes the secret as a variable only.
        (None, MountType::Secret) if m.env.is_some() => None,
        (None, MountType::Secret) => m.id.as_ref().map(|id| format!("/run/secrets/{id}")),
        (None, MountType::Ssh) => None,
        (None, _) => None,
    }
}

/// Splits output into lines for [`Event::Log`], keeping a partial line until it ends.
struct LineSplitter {
    partial: Vec<u8>,
    /// The last lines, for the error of a failing step.
    tail: std::collections::VecDeque<String>,
}

const ERROR_TAIL_LINES: usize = 5;

impl LineSplitter {
    fn feed(&mut self, bytes: &[u8], emit: &mut dyn FnMut(String)) {
        self.partial.extend_from_slice(bytes);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.keep(&text);
            emit(text);
        }
    }

    fn finish(&mut self, emit: &mut dyn FnMut(String)) {
        if !self.partial.is_empty() {
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.keep(&text);
            emit(text);
        }
    }

    fn keep(&mut self, text: &str) {
        if self.tail.len() == ERROR_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_string());
    }
}

impl Build<'_> {
    /// Runs one RUN (or takes it from the cache); returns whether it was cached. Errors are
    /// (kind, message) for the caller to place at the instruction's line.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_step(
        &mut self,
        run: &Run,
        step: &dockerfile::Step,
        state: &mut State,
        plan: &BuildPlan,
        options: &BuildOptions,
        done: &HashMap<usize, State>,
        number: u32,
        source: &str,
    ) -> std::result::Result<bool, (ErrorKind, String)> {
        let invalid = |m: String| (ErrorKind::InvalidArgument, m);
        check_flags(run).map_err(invalid)?;
        let args = command(run, &state.config);
        let env = environment(&state.config, &step.args);
        let cwd = match state.config.working_dir() {
            w if w.is_empty() => "/".to_string(),
            w => w,
        };
        let mut mounts = Vec::new();
        let mut secret_env = Vec::new();
        let mut inputs: Vec<String> = step.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        inputs.push(format!("platform={}", options.platform));
        if let Some(epoch) = options.epoch() {
            inputs.push(format!("{}={epoch}", crate::exec::SOURCE_DATE_EPOCH));
        }
        for m in &run.mounts {
            let target = mount_target(m);
            let kind = match m.kind {
                MountType::Secret => {
                    let id = m.id.clone().or_else(|| {
                        target
                            .as_deref()
                            .and_then(|t| t.rsplit('/').next())
                            .map(str::to_string)
                    });
                    let Some(id) = id else {
                        return Err(invalid("secret mount requires an id or a target".into()));
                    };
                    if let Some(var) = &m.env {
                        secret_env.push(SecretEnv {
                            id: id.clone(),
                            var: var.clone(),
                            required: m.required,
                        });
                        if target.is_none() {
                            continue;
                        }
                    }
                    StepMountKind::Secret {
                        id,
                        required: m.required,
                    }
                }
                MountType::Ssh => StepMountKind::Ssh {
                    id: m.id.clone().unwrap_or_else(|| "default".into()),
                    required: m.required,
                },
                MountType::Tmpfs => StepMountKind::Tmpfs { size: m.size },
                MountType::Cache => {
                    let seed = match &m.from {
                        None => None,
                        Some(from) => Some(CacheSeed {
                            layers: self.layers_for(from, plan, done, options)?,
                            source: format!(
                                "/{}",
                                m.source
                                    .as_deref()
                                    .unwrap_or_default()
                                    .trim_start_matches('/')
                            ),
                        }),
                    };
                    StepMountKind::Cache {
                        id: m.id.clone().or_else(|| target.clone()).unwrap_or_default(),
                        readonly: m.readonly,
                        sharing: m.sharing,
                        seed,
                    }
                }
                MountType::Bind => {
                    // Relative to the root of the context, stage or image.
                    let relative = m
                        .source
                        .as_deref()
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string();
                    let source_path = format!("/{relative}");
                    let from = match &m.from {
                        None => {
                            let spec = crate::copy::CopySpec {
                                root: options.context.clone(),
                                sources: vec![if relative.is_empty() {
                                    ".".into()
                                } else {
                                    relative.clone()
                                }],
                                literals: vec![],
                                urls: vec![],
                                dest: "/".into(),
                                chmod: None,
                                exclude: vec![],
                                unpack_archives: false,
                            };
                            let digest = crate::copy::plan(&spec)
                                .map_err(|e| match e {
                                    CopyError::NotFound(s) => (
                                        ErrorKind::NotFound,
                                        format!("bind mount source {s:?} not found in the context"),
                                    ),
                                    other => (ErrorKind::InvalidArgument, other.to_string()),
                                })
                                .and_then(|items| {
                                    crate::copy::digest(&items, &options.context_digests)
                                        .map_err(|e| (e.kind(), e.to_string()))
                                })?;
                            inputs.push(format!("bind:context:{source_path}:{digest}"));
                            BindFrom::Context
                        }
                        Some(from) => {
                            let layers = self.layers_for(from, plan, done, options)?;
                            let ids: Vec<&str> =
                                layers.iter().map(|l| l.diff_id.as_str()).collect();
                            inputs.push(format!("bind:{}:{source_path}", ids.join(",")));
                            BindFrom::Layers(layers)
                        }
                    };
                    StepMountKind::Bind {
                        from,
                        source: source_path,
                        rw: !m.readonly,
                    }
                }
            };
            let target = match (&kind, target) {
                (_, Some(t)) => t,
                (StepMountKind::Ssh { .. }, None) => {
                    let n = mounts
                        .iter()
                        .filter(|m: &&StepMount| matches!(m.kind, StepMountKind::Ssh { .. }))
                        .count();
                    format!("/run/buildkit/ssh_agent.{n}")
                }
                (_, None) => return Err(invalid("mount requires a target".into())),
            };
            mounts.push(StepMount {
                target,
                kind,
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
            });
        }
        let key = Key::derive(Some(&state.key), source, &inputs.join("\n"));
        if !options.no_cache
            && let Some(entry) = self.cache.get(&key, self.store.content())
        {
            self.push(state, key, entry, &args, &step.args);
            return Ok(true);
        }
        let run_step = RunStep {
            layers: layers_of(state),
            args: args.clone(),
            env,
            cwd,
            user: state.config.user(),
            no_network: run.network == Some(NetworkMode::None),
            mounts,
            secret_env,
            platform: options.platform.clone(),
            context: options.context.clone(),
            source_date_epoch: options.epoch(),
        };
        let runner = self.runner;
        let events = &mut self.events;
        let mut lines = LineSplitter {
            partial: Vec::new(),
            tail: Default::default(),
        };
        let mut emit = |text: String| (events)(Event::Log { number, text });
        let outcome = runner.run(&run_step, &mut |bytes| lines.feed(bytes, &mut emit));
        lines.finish(&mut emit);
        let outcome = outcome.map_err(|e| (e.kind(), e.to_string()))?;
        let shown = source.lines().next().unwrap_or_default();
        if outcome.exit_code != 0 {
            let tail: Vec<String> = lines.tail.into_iter().collect();
            let output = if tail.is_empty() {
                String::new()
            } else {
                format!(" (last output: {})", tail.join(" | "))
            };
            return Err((
                ErrorKind::FailedPrecondition,
                format!("{shown}: exit code {}{output}", outcome.exit_code),
            ));
        }
        let Some(layer) = outcome.layer else {
            return Err((
                ErrorKind::Internal,
                format!("{shown}: the builder returned no layer"),
            ));
        };
        let entry = Entry {
            layer,
            created: now_rfc3339(),
        };
        self.cache
            .put(&key, &entry)
            .map_err(|e| (e.kind(), e.to_string()))?;
        self.push(state, key, entry, &args, &step.args);
        Ok(false)
    }

    /// The layers of `from` (a stage of this build or an image), bottom first, for a mount.
    fn layers_for(
        &self,
        from: &str,
        plan: &BuildPlan,
        done: &HashMap<usize, State>,
        options: &BuildOptions,
    ) -> std::result::Result<Vec<Layer>, (ErrorKind, String)> {
        if let Some(i) = plan.stage_for(from) {
            let s = done
                .get(&i)
                .ok_or_else(|| (ErrorKind::Internal, format!("stage {from} was not built")))?;
            return Ok(layers_of(s));
        }
        let image = self
            .images
            .get(from, &options.platform)
            .map_err(|e| (e.kind(), e.to_string()))?;
        Ok(image
            .manifest
            .layers
            .iter()
            .zip(image.config.diff_ids.iter())
            .map(|(d, id)| Layer {
                descriptor: d.clone(),
                diff_id: id.clone(),
            })
            .collect())
    }

    fn push(
        &self,
        state: &mut State,
        key: Key,
        entry: Entry,
        args: &[String],
        build_args: &[(String, String)],
    ) {
        state.key = key;
        state.created = entry.created.clone();
        state.config.push_layer(&entry.layer.diff_id);
        state.layers.push(entry.layer.descriptor);
        state
            .config
            .push_history(&state.created, &created_by(args, build_args), false);
    }
}

/// A layer holding the whole build context at `/`, for `RUN --mount=type=bind` from it.
pub fn context_layer(store: &oci::store::ContentStore, context: &std::path::Path) -> Result<Layer> {
    let spec = crate::copy::CopySpec {
        root: context.to_path_buf(),
        sources: vec![".".into()],
        literals: vec![],
        urls: vec![],
        dest: "/".into(),
        chmod: None,
        exclude: vec![],
        unpack_archives: false,
    };
    let items = crate::copy::plan(&spec).map_err(|e| match e {
        CopyError::Build(e) => e,
        other => BuildError::Image {
            kind: ErrorKind::InvalidArgument,
            message: format!("the build context: {other}"),
        },
    })?;
    let mut writer = crate::layer::LayerWriter::new(store)?;
    crate::copy::write(&items, &mut writer, crate::copy::Stamp::default())?;
    writer.finish()
}

/// A stage's layers with their diff IDs, bottom first.
fn layers_of(state: &State) -> Vec<Layer> {
    state
        .layers
        .iter()
        .zip(state.config.diff_ids())
        .map(|(d, id)| Layer {
            descriptor: d.clone(),
            diff_id: id,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(command: CommandLine, heredocs: Vec<dockerfile::Heredoc>) -> Run {
        Run {
            command,
            heredocs,
            mount_specs: vec![],
            mounts: vec![],
            network: None,
            security: None,
        }
    }

    #[test]
    fn shell_form_goes_through_the_shell_and_exec_form_does_not() {
        let config = ImageConfig::scratch(&spec::Platform::host());
        let r = run_of(CommandLine::Shell("echo hi".into()), vec![]);
        assert_eq!(command(&r, &config), ["/bin/sh", "-c", "echo hi"]);
        let r = run_of(CommandLine::Exec(vec!["/bin/true".into()]), vec![]);
        assert_eq!(command(&r, &config), ["/bin/true"]);
        let h = dockerfile::Heredoc {
            name: "EOF".into(),
            content: "echo a\necho b\n".into(),
            expand: true,
            chomp: false,
            fd: 0,
        };
        let r = run_of(CommandLine::Shell("<<EOF".into()), vec![h.clone()]);
        assert_eq!(command(&r, &config), ["/bin/sh", "-c", "echo a\necho b\n"]);
        let r = run_of(CommandLine::Shell("cat <<EOF > /f".into()), vec![h]);
        assert_eq!(
            command(&r, &config),
            ["/bin/sh", "-c", "cat <<EOF > /f\necho a\necho b\nEOF"]
        );
    }

    #[test]
    fn history_names_build_args_as_buildkit_does() {
        let args = vec!["/bin/sh".to_string(), "-c".into(), "make".into()];
        assert_eq!(created_by(&args, &[]), "RUN /bin/sh -c make # buildkit");
        assert_eq!(
            created_by(&args, &[("A".into(), "1".into())]),
            "RUN |1 A=1 /bin/sh -c make # buildkit"
        );
    }

    #[test]
    fn the_image_environment_wins_over_build_args() {
        let mut config = ImageConfig::scratch(&spec::Platform::host());
        config.set_env("A", "image");
        let env = environment(
            &config,
            &[("A".into(), "arg".into()), ("B".into(), "b".into())],
        );
        assert!(env.contains(&"A=image".to_string()), "{env:?}");
        assert!(env.contains(&"B=b".to_string()), "{env:?}");
        assert!(!env.contains(&"A=arg".to_string()), "{env:?}");
    }
}
