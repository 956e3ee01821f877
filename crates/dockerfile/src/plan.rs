//! Stages and the build graph: which stages a target needs, in what order, and each stage's
//! instructions expanded in its environment (ARG scoping, ENV over ARG, `--build-arg`,
//! predefined platform and proxy ARGs).

use std::collections::{BTreeMap, BTreeSet};

use spec::Platform;

use crate::expand::{ExpandError, Lexer};
use crate::instruction::{ArgDecl, Command, Copy, Instruction, KeyValue, Source};
use crate::{Dockerfile, Error};

/// Build args that every RUN receives when given, without an ARG, and that Docker keeps
/// out of the image history.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--target`: the stage to build; the last one when None.
    pub target: Option<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The platform the build runs on (BUILDPLATFORM, BUILDOS, …).
    pub build_platform: Platform,
    /// The platform the image is for (TARGETPLATFORM, TARGETOS, …).
    pub target_platform: Platform,
}

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image reference, ARGs expanded.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among all the file's stages (what `--from=1` refers to).
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform=…`, expanded.
    pub platform: Option<Platform>,
    /// The FROM instruction itself.
    pub from: Instruction,
    /// The instructions after FROM, unexpanded.
    pub instructions: Vec<Instruction>,
    /// Stages this one needs first (its base, `COPY --from`, `RUN --mount=from=`), by index.
    pub dependencies: Vec<usize>,
}

impl Stage {
    /// The name users know the stage by: its `AS` name or its index.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// An instruction ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// With its words expanded (RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and ONBUILD are
    /// left as written; RUN's mount options are expanded).
    pub instruction: Instruction,
    /// The ARGs in scope with a value, in declaration order: the environment a RUN gets in
    /// addition to the image's (which wins on a clash), and part of its cache key.
    pub args: Vec<(String, String)>,
    /// Variable names the expansion referred to.
    pub used: BTreeSet<String>,
}

/// The stages a build needs, in an order where each comes after its dependencies.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    /// Reachable stages only, dependencies first; the target is last.
    pub stages: Vec<Stage>,
    /// `--build-arg` names no ARG consumed, sorted (Docker warns about them).
    pub unused_build_args: Vec<String>,
    /// Proxy build args that were given: every RUN gets them, history does not.
    pub proxy_args: Vec<(String, String)>,
    file: String,
    lexer: Lexer,
    build_args: BTreeMap<String, String>,
    /// Global ARGs (before the first FROM) and the predefined platform ARGs, resolved.
    global: BTreeMap<String, Option<String>>,
}

/// The predefined platform ARGs for a build.
fn platform_args(build: &Platform, target: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    out
}

fn stage_ref(value: &str, names: &BTreeMap<String, usize>, count: usize) -> StageRef {
    if let Ok(n) = value.parse::<usize>() {
        return if n < count {
            StageRef::Stage(n)
        } else {
            StageRef::BadIndex(n)
        };
    }
    match names.get(&value.to_ascii_lowercase()) {
        Some(&i) => StageRef::Stage(i),
        None => StageRef::Image,
    }
}

enum StageRef {
    Stage(usize),
    BadIndex(usize),
    Image,
}

impl BuildPlan {
    /// Splits the file into stages, resolves the global ARGs and FROM lines, and keeps the
    /// stages the target needs.
    pub fn new(file: &Dockerfile, options: &BuildOptions) -> Result<BuildPlan, Error> {
        let at = |line: usize, message: String| Error::At {
            file: file.file.clone(),
            line,
            message,
        };
        let lexer = Lexer::new(file.directives.escape);
        let mut global: BTreeMap<String, Option<String>> =
            platform_args(&options.build_platform, &options.target_platform)
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect();
        let mut declared: BTreeSet<String> = BTreeSet::new();

        // Global scope: only ARG before the first FROM.
        let mut rest = file.instructions.as_slice();
        while let Some((first, tail)) = rest.split_first() {
            match &first.command {
                Command::Arg(decls) => {
                    for decl in decls {
                        declared.insert(decl.name.clone());
                        let value = match options.build_args.get(&decl.name) {
                            Some(v) => Some(v.clone()),
                            None => match &decl.default {
                                Some(d) => Some(
                                    expand_word(&lexer, d, &|n| global.get(n).cloned().flatten())
                                        .map_err(|m| at(first.line, m))?
                                        .0,
                                ),
                                None => None,
                            },
                        };
                        global.insert(decl.name.clone(), value);
                    }
                }
                Command::From(_) => break,
                _ => {
                    return Err(at(
                        first.line,
                        format!(
                            "{} instruction before any FROM: no build stage in current context",
                            first.command.keyword()
                        ),
                    ));
                }
            }
            rest = tail;
        }

        // Stages.
        let mut stages: Vec<Stage> = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for ins in rest {
            let Command::From(from) = &ins.command else {
                if let Some(stage) = stages.last_mut() {
                    stage.instructions.push(ins.clone());
                }
                continue;
            };
            let lookup = |n: &str| global.get(n).cloned().flatten();
            let (image, _) =
                expand_word(&lexer, &from.image, &lookup).map_err(|m| at(ins.line, m))?;
            if image.is_empty() {
                return Err(at(
                    ins.line,
                    format!("base name ({}) should not be blank", from.image),
                ));
            }
            let platform = match &from.platform {
                None => None,
                Some(p) => {
                    let (text, _) = expand_word(&lexer, p, &lookup).map_err(|m| at(ins.line, m))?;
                    Some(text.parse::<Platform>().map_err(|e| {
                        at(ins.line, format!("failed to parse platform {text}: {e}"))
                    })?)
                }
            };
            let index = stages.len();
            let base = if image.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else {
                match names.get(&image.to_ascii_lowercase()) {
                    Some(&i) => Base::Stage(i),
                    None => Base::Image(image),
                }
            };
            if let Some(name) = &from.name {
                if names.contains_key(name) {
                    return Err(at(ins.line, format!("duplicate stage name {name:?}")));
                }
                names.insert(name.clone(), index);
            }
            stages.push(Stage {
                index,
                name: from.name.clone(),
                base,
                platform,
                from: ins.clone(),
                instructions: Vec::new(),
                dependencies: Vec::new(),
            });
        }
        if stages.is_empty() {
            return Err(at(
                file.instructions.last().map_or(1, |i| i.line),
                "no build stage in current context: the Dockerfile has no FROM".to_string(),
            ));
        }

        let proxy_args = PROXY_ARGS
            .iter()
            .filter_map(|k| {
                options
                    .build_args
                    .get(*k)
                    .map(|v| (k.to_string(), v.clone()))
            })
            .collect();
        let mut plan = BuildPlan {
            stages: Vec::new(),
            unused_build_args: Vec::new(),
            proxy_args,
            file: file.file.clone(),
            lexer,
            build_args: options.build_args.clone(),
            global,
        };

        let target = match &options.target {
            None => stages.len() - 1,
            Some(t) => *names
                .get(&t.to_ascii_lowercase())
                .ok_or_else(|| Error::UnknownTarget(t.clone()))?,
        };

        // Dependencies of each stage we reach, found by expanding its flags.
        let count = stages.len();
        let mut state = vec![Visit::New; count];
        let mut order = Vec::new();
        plan.visit(target, &mut stages, &names, &mut state, &mut order)?;

        for stage in &stages {
            if state[stage.index] == Visit::Done {
                for ins in &stage.instructions {
                    if let Command::Arg(decls) = &ins.command {
                        declared.extend(decls.iter().map(|d| d.name.clone()));
                    }
                }
            }
        }
        plan.unused_build_args = options
            .build_args
            .keys()
            .filter(|k| !declared.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .cloned()
            .collect();
        let mut by_index: Vec<Option<Stage>> = stages.into_iter().map(Some).collect();
        plan.stages = order
            .into_iter()
            .filter_map(|i| by_index.get_mut(i).and_then(Option::take))
            .collect();
        Ok(plan)
    }

    /// Depth-first: a stage is appended after everything it depends on; meeting a stage
    /// that is still being visited is a cycle.
    fn visit(
        &self,
        index: usize,
        stages: &mut [Stage],
        names: &BTreeMap<String, usize>,
        state: &mut [Visit],
        order: &mut Vec<usize>,
    ) -> Result<(), Error> {
        state[index] = Visit::Active;
        let deps = self.dependencies(&stages[index], names, stages.len())?;
        stages[index].dependencies = deps.iter().map(|(d, _)| *d).collect();
        for (dep, line) in deps {
            match state[dep] {
                Visit::Done => {}
                Visit::Active => {
                    return Err(Error::At {
                        file: self.file.clone(),
                        line,
                        message: format!(
                            "circular dependency detected on stage: {}",
                            stages[dep].display_name()
                        ),
                    });
                }
                Visit::New => self.visit(dep, stages, names, state, order)?,
            }
        }
        state[index] = Visit::Done;
        order.push(index);
        Ok(())
    }

    /// The stages `stage` needs, each with the line that needs it, sorted and unique.
    fn dependencies(
        &self,
        stage: &Stage,
        names: &BTreeMap<String, usize>,
        count: usize,
    ) -> Result<Vec<(usize, usize)>, Error> {
        let mut deps: Vec<(usize, usize)> = Vec::new();
        if let Base::Stage(i) = stage.base {
            deps.push((i, stage.from.line));
        }
        for step in self.steps(stage, &[])? {
            let froms: Vec<&str> = match &step.instruction.command {
                Command::Copy(c) => c.from.as_deref().into_iter().collect(),
                Command::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => Vec::new(),
            };
            for from in froms {
                match stage_ref(from, names, count) {
                    StageRef::Stage(i) => deps.push((i, step.instruction.line)),
                    StageRef::BadIndex(n) => {
                        return Err(Error::At {
                            file: self.file.clone(),
                            line: step.instruction.line,
                            message: format!(
                                "invalid stage index {n}: the Dockerfile has {count} stages"
                            ),
                        });
                    }
                    StageRef::Image => {}
                }
            }
        }
        let mut seen = BTreeSet::new();
        deps.retain(|(d, _)| seen.insert(*d));
        Ok(deps)
    }

    /// What `--from` (or a mount's `from`) names, resolved among this plan's stages: the
    /// stage's index, or None for an image reference.
    pub fn stage_for(&self, from: &str) -> Option<usize> {
        if let Ok(n) = from.parse::<usize>() {
            return Some(n);
        }
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(from.to_ascii_lowercase().as_str()))
            .map(|s| s.index)
    }

    /// The value of a global ARG (or predefined platform ARG) as FROM lines see it.
    pub fn global_arg(&self, name: &str) -> Option<&str> {
        self.global.get(name).and_then(|v| v.as_deref())
    }

    /// Expands `stage`'s instructions in order. `base_env` is the environment of the base
    /// image (or the base stage's final environment); ENV values win over ARG values.
    pub fn steps(&self, stage: &Stage, base_env: &[(String, String)]) -> Result<Vec<Step>, Error> {
        let mut env: Vec<(String, String)> = base_env.to_vec();
        let mut args: Vec<(String, Option<String>)> = Vec::new();
        let mut steps = Vec::with_capacity(stage.instructions.len());
        for ins in &stage.instructions {
            let at = |message: String| Error::At {
                file: self.file.clone(),
                line: ins.line,
                message,
            };
            let mut used = BTreeSet::new();
            let command = {
                let lookup = |name: &str| -> Option<String> {
                    env.iter()
                        .rev()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .or_else(|| {
                            args.iter()
                                .rev()
                                .find(|(k, _)| k == name)
                                .and_then(|(_, v)| v.clone())
                        })
                };
                let mut word = |text: &str| -> Result<String, Error> {
                    let (value, u) = expand_word(&self.lexer, text, &lookup).map_err(&at)?;
                    used.extend(u);
                    Ok(value)
                };
                match &ins.command {
                    Command::Env(pairs) | Command::Label(pairs) => {
                        let pairs = pairs
                            .iter()
                            .map(|kv| {
                                Ok(KeyValue {
                                    key: word(&kv.key)?,
                                    value: word(&kv.value)?,
                                })
                            })
                            .collect::<Result<Vec<_>, Error>>()?;
                        if pairs.iter().any(|kv| kv.key.is_empty()) {
                            return Err(at(format!(
                                "{} names can not be blank",
                                ins.command.keyword()
                            )));
                        }
                        if let Command::Env(_) = ins.command {
                            Command::Env(pairs)
                        } else {
                            Command::Label(pairs)
                        }
                    }
                    Command::Expose(ports) => {
                        let mut out = Vec::new();
                        for p in ports {
                            let e = self
                                .lexer
                                .words(p, &lookup)
                                .map_err(|e| at(process_error(p, &e)))?;
                            used.extend(e.used);
                            for port in e.value {
                                check_port(&port).map_err(&at)?;
                                out.push(port);
                            }
                        }
                        Command::Expose(out)
                    }
                    Command::Copy(c) | Command::Add(c) => {
                        let mut heredoc_used = BTreeSet::new();
                        let c = self
                            .expand_copy(c, &mut word, &lookup, &mut heredoc_used)
                            .map_err(&at)?;
                        used.extend(heredoc_used);
                        if let Command::Copy(_) = ins.command {
                            Command::Copy(c)
                        } else {
                            Command::Add(c)
                        }
                    }
                    Command::Volume(paths) => {
                        let paths = paths
                            .iter()
                            .map(|p| word(p))
                            .collect::<Result<Vec<_>, _>>()?;
                        if paths.iter().any(|p| p.trim().is_empty()) {
                            return Err(at("VOLUME specified can not be an empty string".into()));
                        }
                        Command::Volume(paths)
                    }
                    Command::User(u) => Command::User(word(u)?),
                    Command::Workdir(w) => Command::Workdir(word(w)?),
                    Command::StopSignal(s) => {
                        let s = word(s)?;
                        s.parse::<spec::signal::Signal>()
                            .map_err(|e| at(format!("invalid STOPSIGNAL {s:?}: {e}")))?;
                        Command::StopSignal(s)
                    }
                    Command::Run(r) => {
                        let mut r = r.clone();
                        for m in &mut r.mounts {
                            for field in [&mut m.from, &mut m.source, &mut m.target, &mut m.id] {
                                if let Some(v) = field {
                                    *v = word(v)?;
                                }
                            }
                        }
                        Command::Run(r)
                    }
                    Command::Arg(decls) => {
                        let mut out = Vec::new();
                        for d in decls {
                            let value = match self.build_args.get(&d.name) {
                                Some(v) => Some(v.clone()),
                                None => match &d.default {
                                    Some(def) => Some(word(def)?),
                                    None => self.global.get(&d.name).cloned().flatten(),
                                },
                            };
                            out.push(ArgDecl {
                                name: d.name.clone(),
                                default: value,
                            });
                        }
                        Command::Arg(out)
                    }
                    other => other.clone(),
                }
            };
            match &command {
                Command::Env(pairs) => {
                    for kv in pairs {
                        env.retain(|(k, _)| *k != kv.key);
                        env.push((kv.key.clone(), kv.value.clone()));
                    }
                }
                Command::Arg(decls) => {
                    for d in decls {
                        args.retain(|(k, _)| *k != d.name);
                        args.push((d.name.clone(), d.default.clone()));
                    }
                }
                _ => {}
            }
            steps.push(Step {
                instruction: Instruction {
                    line: ins.line,
                    end_line: ins.end_line,
                    source: ins.source.clone(),
                    command,
                },
                args: args
                    .iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                    .collect(),
                used,
            });
        }
        Ok(steps)
    }

    fn expand_copy(
        &self,
        c: &Copy,
        word: &mut dyn FnMut(&str) -> Result<String, Error>,
        lookup: &dyn Fn(&str) -> Option<String>,
        used: &mut BTreeSet<String>,
    ) -> Result<Copy, String> {
        let mut w = |t: &str| word(t).map_err(|e| inner_message(&e));
        let mut out = c.clone();
        for s in &mut out.sources {
            match s {
                Source::Path(p) => *p = w(p)?,
                Source::Heredoc(h) if h.expand => {
                    let e = self
                        .lexer
                        .heredoc(&h.content, lookup)
                        .map_err(|e| process_error(&h.content, &e))?;
                    used.extend(e.used);
                    h.content = e.value;
                }
                Source::Heredoc(_) => {}
            }
        }
        out.dest = w(&c.dest)?;
        for field in [
            &mut out.from,
            &mut out.chown,
            &mut out.chmod,
            &mut out.checksum,
        ] {
            if let Some(v) = field {
                *v = w(v)?;
            }
        }
        for e in &mut out.exclude {
            *e = w(e)?;
        }
        Ok(out)
    }
}

fn inner_message(e: &Error) -> String {
    match e {
        Error::At { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Active,
    Done,
}

fn process_error(text: &str, e: &ExpandError) -> String {
    format!("failed to process {text:?}: {e}")
}

fn expand_word(
    lexer: &Lexer,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, BTreeSet<String>), String> {
    lexer
        .word(text, lookup)
        .map(|e| (e.value, e.used))
        .map_err(|e| process_error(text, &e))
}

/// `80`, `80/udp`, `8000-8010/tcp`.
fn check_port(text: &str) -> Result<(), String> {
    let (ports, proto) = match text.split_once('/') {
        Some((p, proto)) => (p, Some(proto)),
        None => (text, None),
    };
    if let Some(proto) = proto
        && !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp")
    {
        return Err(format!("invalid proto: {proto}"));
    }
    let valid = |p: &str| p.parse::<u16>().is_ok();
    let ok = match ports.split_once('-') {
        Some((a, b)) => valid(a) && valid(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
        None => valid(ports),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid containerPort: {ports}"))
    }
}
