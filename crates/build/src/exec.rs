//! Running a build plan: stage by stage, step by step, with the cache.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dockerfile::instruction::{Command, Copy, Source};
use dockerfile::plan::Base;
use dockerfile::{BuildPlan, Dockerfile, Stage};
use oci::{Descriptor, media_type};
use serde_json::json;

use crate::cache::{Cache, Entry, Key};
use crate::config::ImageConfig;
use crate::copy::{self, CopyError, CopySpec};
use crate::layer::{self, LayerWriter};
use crate::{BuildError, ErrorKind, Result};

/// Where base images come from: the daemon pulls a missing one (or every one, with
/// `--pull`) and hands back the platform's manifest and config.
pub trait BaseImages {
    /// The image `reference` (as the Dockerfile writes it, ARGs expanded) for `platform`.
    fn get(&self, reference: &str, platform: &spec::Platform) -> Result<oci::ResolvedImage>;

    /// Downloads `url` (an `ADD` source) into the new file `dest`.
    fn fetch(&self, url: &str, dest: &std::path::Path) -> Result<()>;
}

/// What the build reports as it goes; the daemon turns these into progress messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step begins: its number over the whole build, the stage's name, its position in
    /// the stage (the FROM is 1) and the stage's step count, the instruction.
    Step {
        number: u32,
        stage: String,
        index: u32,
        count: u32,
        instruction: String,
    },
    /// A step ended, from the cache or not.
    Done {
        number: u32,
        cached: bool,
        duration: Duration,
    },
    /// Output of a step.
    Log { number: u32, text: String },
    /// A warning (unused build args, deprecated instructions).
    Warning(String),
    /// Sent once before the first step: the steps the plan counts (each stage's FROM and
    /// its layer steps). ONBUILD triggers may add steps beyond it.
    Planned { steps: u32 },
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Dockerfile's text and the name errors give it.
    pub dockerfile: String,
    pub dockerfile_name: String,
    /// The context, already unpacked (and filtered by `.dockerignore`).
    pub context: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// `--label`s for the image.
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// The platform the image is for.
    pub platform: spec::Platform,
    /// The sha256 of the context's files (by their path under `context`), hashed as the
    /// context arrived; files missing here are read and hashed when a COPY needs them.
    pub context_digests: std::sync::Arc<copy::KnownDigests>,
}

/// The build arg that pins every timestamp of the image (reproducible-builds.org).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

impl BuildOptions {
    /// SOURCE_DATE_EPOCH (seconds) when given as a build arg: the image's `created`, every
    /// history entry's at most, and the latest mtime of any file in the layers it writes.
    /// An empty value counts as unset, as BuildKit takes it.
    pub fn source_date_epoch(&self) -> std::result::Result<Option<i64>, String> {
        match self.build_args.get(SOURCE_DATE_EPOCH).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| {
                    format!("invalid {SOURCE_DATE_EPOCH} {v:?}: expected whole seconds since 1970")
                }),
        }
    }

    /// The epoch, already checked by [`Build::run`].
    pub(crate) fn epoch(&self) -> Option<i64> {
        self.source_date_epoch().ok().flatten()
    }

    /// What the epoch adds to a layer step's cache key: the same files dated differently
    /// make another layer.
    pub(crate) fn epoch_input(&self) -> String {
        self.epoch()
            .map_or_else(String::new, |e| format!(" {SOURCE_DATE_EPOCH}={e}"))
    }
}

/// The built image: its manifest in the store.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Descriptor,
    pub config: Descriptor,
}

/// A build in progress.
pub struct Build<'a> {
    pub store: &'a oci::Store,
    pub cache: &'a Cache,
    pub images: &'a dyn BaseImages,
    /// Runs RUN steps in a builder VM (the daemon boots it at the first step that misses
    /// the cache).
    pub runner: &'a dyn crate::step::StepRunner,
    /// A private scratch directory for root filesystems `COPY --from` reads; the caller
    /// removes it afterwards.
    pub work: PathBuf,
    pub events: &'a mut dyn FnMut(Event),
}

/// A stage's state: its config, layers and cache key so far.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) config: ImageConfig,
    pub(crate) layers: Vec<Descriptor>,
    pub(crate) key: Key,
    /// The time of the stage's last layer step (or its base's creation): what metadata
    /// steps and the image record, so a cached rebuild reproduces the image ID.
    pub(crate) created: String,
}

pub(crate) fn now_rfc3339() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    spec::format_time(nanos, false)
}

/// A Go-style quoted list, as BuildKit writes exec forms into history (`["a" "b"]`).
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// The history `created_by` BuildKit writes for a metadata instruction, words expanded;
/// None where the instruction as written is used.
fn created_by(command: &Command) -> Option<String> {
    use dockerfile::instruction::CommandLine;
    let line = |kw: &str, c: &CommandLine| match c {
        CommandLine::Exec(a) => format!("{kw} {}", go_list(a)),
        CommandLine::Shell(t) => format!(
            "{kw} {}",
            go_list(&["/bin/sh".into(), "-c".into(), t.clone()])
        ),
    };
    let pairs = |kw: &str, kv: &[dockerfile::instruction::KeyValue]| {
        let parts: Vec<String> = kv
            .iter()
            .map(|p| format!("{}={}", p.key, p.value))
            .collect();
        format!("{kw} {}", parts.join(" "))
    };
    Some(match command {
        Command::Env(kv) => pairs("ENV", kv),
        Command::Label(kv) => pairs("LABEL", kv),
        Command::Workdir(w) => format!("WORKDIR {w}"),
        Command::User(u) => format!("USER {u}"),
        Command::StopSignal(s) => format!("STOPSIGNAL {s}"),
        Command::Cmd(c) => line("CMD", c),
        Command::Entrypoint(c) => line("ENTRYPOINT", c),
        Command::Shell(s) => format!("SHELL {}", go_list(s)),
        Command::Expose(ports) => {
            let mut keys: Vec<String> = ports
                .iter()
                .map(|p| {
                    if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    }
                })
                .collect();
            keys.sort();
            keys.dedup();
            let inner: Vec<String> = keys.iter().map(|k| format!("{k}:{{}}")).collect();
            format!("EXPOSE map[{}]", inner.join(" "))
        }
        Command::Volume(v) => format!("VOLUME [{}]", v.join(" ")),
        _ => return None,
    })
}

/// Parses a base image's ONBUILD triggers into instructions placed at the FROM line
/// (`from_line`), where errors about them point. A trigger may not be ONBUILD, FROM or
/// MAINTAINER (the Dockerfile parser refuses them in our own files; a base built
/// elsewhere may still carry one).
pub fn trigger_instructions(
    file: &str,
    from_line: usize,
    triggers: &[String],
) -> Result<Vec<dockerfile::instruction::Instruction>> {
    let at = |message: String| BuildError::Step {
        file: file.to_string(),
        line: from_line,
        kind: ErrorKind::InvalidArgument,
        message,
    };
    let mut out = Vec::new();
    for t in triggers {
        let keyword = t
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if matches!(keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
            return Err(at(format!(
                "{keyword} isn't allowed as an ONBUILD trigger (the base image has {t:?})"
            )));
        }
        let parsed = Dockerfile::parse(file, t).map_err(|e| {
            at(format!(
                "the base image's ONBUILD trigger {:?} is invalid: {e}",
                t.lines().next().unwrap_or_default()
            ))
        })?;
        for mut i in parsed.instructions {
            i.line = from_line;
            i.end_line = from_line;
            out.push(i);
        }
    }
    Ok(out)
}

/// Steps the progress counts in a stage (FROM, and each step that makes a layer).
fn counts(command: &Command) -> bool {
    matches!(
        command,
        Command::Copy(_) | Command::Add(_) | Command::Run(_)
    )
}

impl Build<'_> {
    /// Runs the build; returns the image, written to the store but not named.
    pub fn run(&mut self, options: &BuildOptions) -> Result<Built> {
        let epoch = options
            .source_date_epoch()
            .map_err(|message| BuildError::Image {
                kind: ErrorKind::InvalidArgument,
                message,
            })?;
        let file = Dockerfile::parse(&options.dockerfile_name, &options.dockerfile)?;
        for w in &file.warnings {
            (self.events)(Event::Warning(format!(
                "{}:{}: {}",
                file.file, w.line, w.message
            )));
        }
        let plan = BuildPlan::new(
            &file,
            &dockerfile::BuildOptions {
                target: options.target.clone(),
                build_args: options.build_args.clone(),
                build_platform: spec::Platform::host(),
                target_platform: options.platform.clone(),
            },
        )?;
        // SOURCE_DATE_EPOCH is the builder's own, consumed or not (as in BuildKit).
        let unused: Vec<&str> = plan
            .unused_build_args
            .iter()
            .map(String::as_str)
            .filter(|a| *a != SOURCE_DATE_EPOCH)
            .collect();
        if !unused.is_empty() {
            (self.events)(Event::Warning(format!(
                "one or more build-args [{}] were not consumed",
                unused.join(" ")
            )));
        }
        let runs = plan.stages.iter().any(|s| {
            s.instructions
                .iter()
                .any(|i| matches!(i.command, Command::Run(_)))
        });
        if options.no_cache && runs {
            self.runner.will_run(&options.platform);
        }
        let planned: usize = plan
            .stages
            .iter()
            .map(|s| 1 + s.instructions.iter().filter(|i| counts(&i.command)).count())
            .sum();
        (self.events)(Event::Planned {
            steps: planned as u32,
        });
        let mut done: HashMap<usize, State> = HashMap::new();
        let mut roots: HashMap<String, PathBuf> = HashMap::new();
        let mut number = 0u32;
        let mut last = None;
        for stage in &plan.stages {
            let state = self.stage(
                &file.file,
                &plan,
                stage,
                options,
                &done,
                &mut roots,
                &mut number,
            )?;
            done.insert(stage.index, state.clone());
            last = Some(state);
        }
        let Some(mut state) = last else {
            return Err(BuildError::Image {
                kind: ErrorKind::InvalidArgument,
                message: "the build has no stage".into(),
            });
        };
        for (k, v) in &options.labels {
            state.config.set_label(k, v);
        }
        if let Some(epoch) = epoch {
            state.config.clamp_history(epoch);
            state.created = spec::format_time(epoch.saturating_mul(1_000_000_000), true);
        }
        self.write_image(&state)
    }

    #[allow(clippy::too_many_arguments)]
    fn stage(
        &mut self,
        file: &str,
        plan: &BuildPlan,
        stage: &Stage,
        options: &BuildOptions,
        done: &HashMap<usize, State>,
        roots: &mut HashMap<String, PathBuf>,
        number: &mut u32,
    ) -> Result<State> {
        let at = |line: usize, kind: ErrorKind, message: String| BuildError::Step {
            file: file.to_string(),
            line,
            kind,
            message,
        };
        let platform = stage.platform.clone().unwrap_or(options.platform.clone());
        let name = stage.display_name();
        let mut count = 1 + stage
            .instructions
            .iter()
            .filter(|i| counts(&i.command))
            .count() as u32;
        *number += 1;
        let from_number = *number;
        (self.events)(Event::Step {
            number: from_number,
            stage: name.clone(),
            index: 1,
            count,
            instruction: match &stage.base {
                Base::Scratch => "FROM scratch".to_string(),
                Base::Image(r) => format!("FROM {r}"),
                Base::Stage(i) => format!(
                    "FROM {}",
                    plan.stages
                        .iter()
                        .find(|s| s.index == *i)
                        .map_or_else(|| i.to_string(), Stage::display_name)
                ),
            },
        });
        let started = Instant::now();
        let mut state = match &stage.base {
            Base::Scratch => State {
                config: ImageConfig::scratch(&platform),
                layers: Vec::new(),
                key: Key::root("scratch"),
                created: spec::format_time(0, true),
            },
            Base::Stage(i) => done.get(i).cloned().ok_or_else(|| {
                at(
                    stage.from.line,
                    ErrorKind::Internal,
                    format!("stage {i} was not built before its use"),
                )
            })?,
            Base::Image(reference) => {
                let image = self
                    .images
                    .get(reference, &platform)
                    .map_err(|e| at(stage.from.line, e.kind(), e.to_string()))?;
                let bytes = self.store.content().read(&image.manifest.config.digest)?;
                let config = ImageConfig::from_base(&bytes).map_err(|e| {
                    at(
                        stage.from.line,
                        ErrorKind::InvalidArgument,
                        format!("the config of {reference} is malformed: {e}"),
                    )
                })?;
                State {
                    config,
                    layers: image.manifest.layers.clone(),
                    key: Key::root(&image.manifest_descriptor.digest.to_string()),
                    created: image
                        .config
                        .created
                        .clone()
                        .unwrap_or_else(|| spec::format_time(0, true)),
                }
            }
        };
        // The base's ONBUILD triggers run first, then leave the new image's config, as
        // Docker does.
        let triggers = state.config.onbuild();
        state.config.clear_onbuild();
        let with_triggers;
        let stage = if triggers.is_empty() {
            stage
        } else {
            (self.events)(Event::Log {
                number: from_number,
                text: format!(
                    "Executing {} build trigger{}",
                    triggers.len(),
                    if triggers.len() == 1 { "" } else { "s" }
                ),
            });
            let instructions = trigger_instructions(file, stage.from.line, &triggers)?;
            count += instructions.iter().filter(|i| counts(&i.command)).count() as u32;
            let mut s = stage.clone();
            s.instructions.splice(0..0, instructions);
            with_triggers = s;
            &with_triggers
        };
        (self.events)(Event::Done {
            number: from_number,
            cached: false,
            duration: started.elapsed(),
        });
        let steps = plan.steps(stage, &state.config.env())?;
        let mut index = 1u32;
        let mut cmd_set_here = false;
        for step in steps {
            let ins = &step.instruction;
            let line = ins.line;
            let source = ins.source.clone();
            let shown = source.lines().next().unwrap_or_default().to_string();
            let meta_key = |state: &State| Key::derive(Some(&state.key), &source, "");
            match &ins.command {
                Command::Copy(c) | Command::Add(c) => {
                    index += 1;
                    *number += 1;
                    let n = *number;
                    (self.events)(Event::Step {
                        number: n,
                        stage: name.clone(),
                        index,
                        count,
                        instruction: shown.clone(),
                    });
                    let started = Instant::now();
                    let is_add = matches!(ins.command, Command::Add(_));
                    let (layer, cached) = self
                        .copy(c, is_add, &state, plan, options, done, roots, &source)
                        .map_err(|e| match e {
                            CopyError::NotFound(s) => at(
                                line,
                                ErrorKind::NotFound,
                                format!("{} source {s:?} not found", ins.command.keyword()),
                            ),
                            CopyError::Exclude(m) => at(line, ErrorKind::InvalidArgument, m),
                            CopyError::Build(BuildError::Step { message, kind, .. }) => {
                                at(line, kind, message)
                            }
                            CopyError::Build(e) => at(line, e.kind(), e.to_string()),
                        })?;
                    state.key = layer.1;
                    let entry = layer.0;
                    state.created = entry.created.clone();
                    state.config.push_layer(&entry.layer.diff_id);
                    state.layers.push(entry.layer.descriptor);
                    state.config.push_history(
                        &state.created,
                        &format!("{shown} # buildkit"),
                        false,
                    );
                    (self.events)(Event::Done {
                        number: n,
                        cached,
                        duration: started.elapsed(),
                    });
                    continue;
                }
                Command::Run(run) => {
                    index += 1;
                    *number += 1;
                    let n = *number;
                    (self.events)(Event::Step {
                        number: n,
                        stage: name.clone(),
                        index,
                        count,
                        instruction: shown.clone(),
                    });
                    let started = Instant::now();
                    let cached = self
                        .run_step(run, &step, &mut state, plan, options, done, n, &source)
                        .map_err(|(kind, message)| at(line, kind, message))?;
                    (self.events)(Event::Done {
                        number: n,
                        cached,
                        duration: started.elapsed(),
                    });
                    continue;
                }
                Command::Env(pairs) => {
                    for kv in pairs {
                        state.config.set_env(&kv.key, &kv.value);
                    }
                }
                Command::Label(pairs) => {
                    for kv in pairs {
                        state.config.set_label(&kv.key, &kv.value);
                    }
                }
                Command::Workdir(dir) => {
                    let current = state.config.working_dir();
                    let joined = if dir.starts_with('/') {
                        dir.clone()
                    } else {
                        format!("{}/{dir}", current.trim_end_matches('/'))
                    };
                    let cleaned = format!("/{}", layer::clean_relative(&joined).display());
                    state.config.set_working_dir(&cleaned);
                }
                Command::User(u) => state.config.set_user(u),
                Command::Expose(ports) => {
                    for p in ports {
                        state.config.expose(p);
                    }
                }
                Command::Volume(paths) => {
                    for p in paths {
                        state.config.add_volume(p);
                    }
                }
                Command::StopSignal(s) => state.config.set_stop_signal(s),
                Command::Healthcheck(h) => state.config.set_healthcheck(h),
                Command::Shell(s) => state.config.set_shell(s),
                Command::Cmd(c) => {
                    state.config.set_cmd(c);
                    cmd_set_here = true;
                }
                Command::Entrypoint(e) => state.config.set_entrypoint(e, cmd_set_here),
                Command::Onbuild(o) => state.config.add_onbuild(&o.trigger),
                Command::Maintainer(m) => state.config.set_author(m),
                // ARG leaves no trace in the image, as in BuildKit; FROM starts stages.
                Command::Arg(_) | Command::From(_) => {
                    state.key = meta_key(&state);
                    continue;
                }
            }
            state.key = meta_key(&state);
            let by = created_by(&ins.command).unwrap_or(shown);
            state.config.push_history(&state.created, &by, true);
        }
        Ok(state)
    }

    /// Runs one COPY or ADD: its layer (new or cached) and its cache key.
    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        c: &Copy,
        is_add: bool,
        state: &State,
        plan: &BuildPlan,
        options: &BuildOptions,
        done: &HashMap<usize, State>,
        roots: &mut HashMap<String, PathBuf>,
        source: &str,
    ) -> Result<((Entry, Key), bool), CopyError> {
        let fail = |kind: ErrorKind, message: String| {
            CopyError::Build(BuildError::Step {
                file: String::new(),
                line: 0,
                kind,
                message,
            })
        };
        let root = match &c.from {
            None => options.context.clone(),
            Some(from) => match plan.stage_for(from) {
                Some(i) => {
                    let s = done.get(&i).ok_or_else(|| {
                        fail(ErrorKind::Internal, format!("stage {from} was not built"))
                    })?;
                    self.materialize(&format!("stage-{i}"), &s.layers, roots)?
                }
                None => {
                    let image = self
                        .images
                        .get(from, &options.platform)
                        .map_err(|e| fail(e.kind(), e.to_string()))?;
                    let id = format!("image-{}", image.manifest_descriptor.digest.hex());
                    self.materialize(&id, &image.manifest.layers, roots)?
                }
            },
        };
        let mut sources = Vec::new();
        let mut literals = Vec::new();
        let mut urls = Vec::new();
        if c.checksum.is_some()
            && !c
                .sources
                .iter()
                .any(|s| matches!(s, Source::Path(p) if p.starts_with("http://") || p.starts_with("https://")))
        {
            return Err(fail(
                ErrorKind::InvalidArgument,
                "--checksum can only be used with an HTTP(S) source".into(),
            ));
        }
        for s in &c.sources {
            match s {
                Source::Path(p) => {
                    if is_add && (p.starts_with("http://") || p.starts_with("https://")) {
                        urls.push(self.download(p, c.checksum.as_deref(), urls.len())?);
                        continue;
                    }
                    if is_add && p.starts_with("git@") {
                        return Err(fail(
                            ErrorKind::InvalidArgument,
                            format!("ADD from a git repository ({p}) is not supported"),
                        ));
                    }
                    sources.push(p.clone());
                }
                Source::Heredoc(h) => {
                    literals.push((h.name.clone(), h.content.clone().into_bytes()))
                }
            }
        }
        let workdir = state.config.working_dir();
        let dest = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            let base = if workdir.is_empty() { "/" } else { &workdir };
            format!("{}/{}", base.trim_end_matches('/'), c.dest)
        };
        let chmod = match &c.chmod {
            None => None,
            Some(m) => Some(copy::parse_chmod(m).ok_or_else(|| {
                fail(
                    ErrorKind::InvalidArgument,
                    format!("invalid --chmod {m:?}: expected an octal mode"),
                )
            })?),
        };
        let owner = match &c.chown {
            None => (0, 0),
            Some(spec) => self
                .owner(spec, state, roots)
                .map_err(|m| fail(ErrorKind::InvalidArgument, m))?,
        };
        let spec = CopySpec {
            root,
            sources,
            literals,
            urls,
            dest,
            chmod,
            exclude: c.exclude.clone(),
            unpack_archives: is_add && c.unpack != Some(false),
        };
        let items = copy::plan(&spec)?;
        let inputs = format!(
            "{} owner={}:{}{}",
            copy::digest(&items, &options.context_digests)?,
            owner.0,
            owner.1,
            options.epoch_input()
        );
        let key = Key::derive(Some(&state.key), source, &inputs);
        if !options.no_cache
            && let Some(entry) = self.cache.get(&key, self.store.content())
        {
            return Ok(((entry, key), true));
        }
        let mut writer = LayerWriter::new(self.store.content())?;
        let stamp = copy::Stamp {
            owner,
            epoch: options.epoch().map(|e| e as u64),
        };
        copy::write(&items, &mut writer, stamp)?;
        let entry = Entry {
            layer: writer.finish()?,
            created: now_rfc3339(),
        };
        self.cache.put(&key, &entry)?;
        Ok(((entry, key), false))
    }

    /// Downloads an `ADD` URL into the work directory and checks `--checksum`; returns the
    /// file's name in the image (the URL's last path segment) and where it is.
    fn download(
        &mut self,
        url: &str,
        checksum: Option<&str>,
        n: usize,
    ) -> Result<(String, PathBuf), CopyError> {
        let fail = |kind: ErrorKind, message: String| {
            CopyError::Build(BuildError::Step {
                file: String::new(),
                line: 0,
                kind,
                message,
            })
        };
        let path_part = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['?', '#'])
            .next()
            .unwrap_or_default();
        let name = path_part
            .split_once('/')
            .map(|(_, p)| p.rsplit('/').next().unwrap_or_default())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .unwrap_or("__unnamed__")
            .to_string();
        let dir = self.work.join(format!("url-{n}"));
        std::fs::create_dir_all(&dir)
            .map_err(BuildError::io(format!("creating {}", dir.display())))?;
        let file = dir.join("download");
        self.images
            .fetch(url, &file)
            .map_err(|e| fail(e.kind(), format!("ADD {url}: {e}")))?;
        if let Some(want) = checksum {
            let got = oci::Digest::of(
                &std::fs::read(&file)
                    .map_err(BuildError::io(format!("reading {}", file.display())))?,
            )
            .to_string();
            if got != want {
                return Err(fail(
                    ErrorKind::InvalidArgument,
                    format!("digest mismatch for {url}: expected {want}, got {got}"),
                ));
            }
        }
        Ok((name, file))
    }

    /// `--chown=user[:group]`: numbers, or names from the stage's `/etc/passwd` and
    /// `/etc/group`.
    fn owner(
        &mut self,
        spec: &str,
        state: &State,
        roots: &mut HashMap<String, PathBuf>,
    ) -> Result<(u32, u32), String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let numeric = |s: &str| s.parse::<u32>().ok();
        let needs_files = numeric(user).is_none() || group.is_some_and(|g| numeric(g).is_none());
        let (passwd, groups) = if needs_files {
            let id = format!("chown-{}", state.key.as_str());
            let root = self
                .materialize(&id, &state.layers, roots)
                .map_err(|e| e.to_string())?;
            let read = |p: &str| {
                layer::resolve_in_root(&root, p, true)
                    .ok()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default()
            };
            (read("/etc/passwd"), read("/etc/group"))
        } else {
            (String::new(), String::new())
        };
        let lookup = |text: &str, name: &str| -> Option<(u32, u32)> {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[0] == name)
                    .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                    .flatten()
            })
        };
        let (uid, primary_gid) = match numeric(user) {
            Some(u) => (u, u),
            None => lookup(&passwd, user).ok_or_else(|| {
                format!("unable to find user {user}: no matching entries in passwd file")
            })?,
        };
        let gid = match group {
            None => primary_gid,
            Some(g) => match numeric(g) {
                Some(n) => n,
                None => lookup(&groups, g).map(|(gid, _)| gid).ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
            },
        };
        Ok((uid, gid))
    }

    /// Unpacks `layers` into a directory under the work directory, once per id.
    fn materialize(
        &mut self,
        id: &str,
        layers: &[Descriptor],
        roots: &mut HashMap<String, PathBuf>,
    ) -> Result<PathBuf> {
        if let Some(p) = roots.get(id) {
            return Ok(p.clone());
        }
        let dir = self.work.join(id);
        std::fs::create_dir_all(&dir)
            .map_err(BuildError::io(format!("creating {}", dir.display())))?;
        for l in layers {
            layer::apply_layer(&dir, oci::open_layer(self.store.content(), l)?)?;
        }
        roots.insert(id.to_string(), dir.clone());
        Ok(dir)
    }

    /// Writes the config and the manifest into the store.
    fn write_image(&self, state: &State) -> Result<Built> {
        let config_bytes = state.config.to_json(&state.created);
        let config = Descriptor::of(media_type::OCI_CONFIG, &config_bytes);
        self.store
            .content()
            .write_blob(&config_bytes, Some(&config.digest))?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": config,
            "layers": state.layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| BuildError::Io {
            what: "encoding the manifest".into(),
            source: std::io::Error::other(e),
        })?;
        let desc = Descriptor::of(media_type::OCI_MANIFEST, &bytes);
        self.store
            .content()
            .write_blob(&bytes, Some(&desc.digest))?;
        Ok(Built {
            manifest: desc,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options_with(args: &[(&str, &str)]) -> BuildOptions {
        BuildOptions {
            dockerfile: String::new(),
            dockerfile_name: "Dockerfile".into(),
            context: PathBuf::new(),
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: None,
            labels: BTreeMap::new(),
            no_cache: false,
            platform: spec::Platform::host(),
            context_digests: Default::default(),
        }
    }

    #[test]
    fn source_date_epoch_is_whole_seconds_and_keys_the_cache() {
        assert_eq!(options_with(&[]).source_date_epoch(), Ok(None));
        assert_eq!(options_with(&[(SOURCE_DATE_EPOCH, "")]).epoch(), None);
        let set = options_with(&[(SOURCE_DATE_EPOCH, "1700000000")]);
        assert_eq!(set.source_date_epoch(), Ok(Some(1_700_000_000)));
        assert_eq!(set.epoch_input(), " SOURCE_DATE_EPOCH=1700000000");
        assert_eq!(options_with(&[]).epoch_input(), "");
        for bad in ["-1", "1.5", "yesterday"] {
            let e = options_with(&[(SOURCE_DATE_EPOCH, bad)])
                .source_date_epoch()
                .unwrap_err();
            assert!(e.starts_with("invalid SOURCE_DATE_EPOCH"), "{e}");
        }
    }

    #[test]
    fn triggers_parse_at_the_from_line_and_forbidden_ones_are_refused() {
        let ins = trigger_instructions(
            "Dockerfile",
            3,
            &[
                "COPY a.txt /a.txt".to_string(),
                "LABEL x=1".to_string(),
                "COPY <<EOF /h.txt\nhi\nEOF".to_string(),
            ],
        )
        .unwrap();
        assert_eq!(ins.len(), 3);
        assert!(ins.iter().all(|i| i.line == 3));
        assert!(matches!(ins[0].command, Command::Copy(_)));
        assert!(matches!(ins[1].command, Command::Label(_)));
        let Command::Copy(c) = &ins[2].command else {
            panic!("{:?}", ins[2].command)
        };
        assert!(matches!(&c.sources[0], Source::Heredoc(h) if h.content == "hi\n"));
        for (t, kw) in [
            ("ONBUILD RUN x", "ONBUILD"),
            ("from busybox", "FROM"),
            ("MAINTAINER me", "MAINTAINER"),
        ] {
            let e = trigger_instructions("Dockerfile", 1, &[t.to_string()])
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "Dockerfile:1: {kw} isn't allowed as an ONBUILD trigger"
                )),
                "{e}"
            );
        }
        let e = trigger_instructions("Dockerfile", 2, &["FROB x".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Dockerfile:2: the base image's ONBUILD trigger \"FROB x\" is invalid"),
            "{e}"
        );
    }
}
