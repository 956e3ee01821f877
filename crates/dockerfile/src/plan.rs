//! Stages and the build graph: which stages a target needs, in what order, and each stage's
//! instructions expanded in its environment (ARG scoping, ENV over ARG, `--build-arg`,
//! predefined platform and proxy ARGs).

use std::collections::{BTreeMap, BTreeSet};

use spec::Platform;

use crate::expand::{ExpandError, Lexer};
use crate::instruction::{ArgDecl, Command, Copy, Instruction, KeyValue, Source};
use crate::mount::parse_mount_with;
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
    /// Stages this one needs first (its base, `COPY --from`, `RUN --mount=from=`), by index,
    /// in the order the file first names them.
    pub dependencies: Vec<usize>,
    /// Images that `COPY --from` or `RUN --mount=from=` name (no stage has that name), with
    /// the line naming each: the executor pulls them, and a failed pull names the line.
    pub images: Vec<(usize, String)>,
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
                images: Vec::new(),
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
        let (deps, images) = self.dependencies(&stages[index], names, stages.len())?;
        stages[index].dependencies = deps.iter().map(|(d, _)| *d).collect();
        stages[index].images = images;
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

    /// The stages `stage` needs, each once with the first line that needs it, and the
    /// images its `--from` values name.
    fn dependencies(
        &self,
        stage: &Stage,
        names: &BTreeMap<String, usize>,
        count: usize,
    ) -> Result<Needs, Error> {
        let mut deps: Vec<(usize, usize)> = Vec::new();
        let mut images: Vec<(usize, String)> = Vec::new();
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
                    StageRef::Image => images.push((step.instruction.line, from.to_string())),
                }
            }
        }
        let mut seen = BTreeSet::new();
        deps.retain(|(d, _)| seen.insert(*d));
        Ok((deps, images))
    }

    /// What `--from` (or a mount's `from`) names, resolved among this plan's stages: the
    /// stage's index, or None for an image reference.
    pub fn stage_for(&self, from: &str) -> Option<usize> {
        if let Ok(n) = from.parse::<usize>() {
            return self.stages.iter().find(|s| s.index == n).map(|s| s.index);
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
                        r.mounts = r
                            .mount_specs
                            .iter()
                            .map(|spec| {
                                parse_mount_with(spec, &mut |v| {
                                    word(v).map_err(|e| inner_message(&e))
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| at(e.to_string()))?;
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
        let fields = [
            &mut out.from,
            &mut out.chown,
            &mut out.chmod,
            &mut out.checksum,
        ];
        for v in fields.into_iter().flatten() {
            *v = w(v)?;
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

/// What a stage needs: (stage index, line) for each stage and (line, reference) for each
/// image its `--from` values name.
type Needs = (Vec<(usize, usize)>, Vec<(usize, String)>);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instruction::{CommandLine, Healthcheck};
    use crate::parse::Heredoc;

    fn options(target: Option<&str>, args: &[(&str, &str)]) -> BuildOptions {
        BuildOptions {
            target: target.map(str::to_string),
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            build_platform: Platform::new("linux", "amd64", None),
            target_platform: Platform::new("linux", "arm64", None),
        }
    }

    fn plan(text: &str, target: Option<&str>, args: &[(&str, &str)]) -> Result<BuildPlan, Error> {
        let file = Dockerfile::parse("Dockerfile", text)?;
        BuildPlan::new(&file, &options(target, args))
    }

    /// The expanded commands of the last (target) stage.
    fn target_commands(text: &str, args: &[(&str, &str)]) -> Vec<Command> {
        let p = plan(text, None, args).unwrap();
        let stage = p.stages.last().unwrap();
        p.steps(stage, &[])
            .unwrap()
            .into_iter()
            .map(|s| s.instruction.command)
            .collect()
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: v.into(),
        }
    }

    fn names(p: &BuildPlan) -> Vec<String> {
        p.stages.iter().map(Stage::display_name).collect()
    }

    #[test]
    fn env_expansion_reference_example() {
        // The Dockerfile reference's "Environment replacement" example.
        let cmds = target_commands(
            "FROM busybox\nENV FOO=/bar\nWORKDIR ${FOO}\nADD . $FOO\nCOPY \\$FOO /quux\n",
            &[],
        );
        assert_eq!(cmds[1], Command::Workdir("/bar".into()));
        let Command::Add(add) = &cmds[2] else {
            panic!()
        };
        assert_eq!(add.sources, [Source::Path(".".into())]);
        assert_eq!(add.dest, "/bar");
        let Command::Copy(copy) = &cmds[3] else {
            panic!()
        };
        assert_eq!(copy.sources, [Source::Path("$FOO".into())]);
        assert_eq!(copy.dest, "/quux");
    }

    #[test]
    fn env_values_are_replaced_for_the_whole_instruction() {
        // From the reference: `ENV abc=bye def=$abc` sees the previous `abc`.
        let cmds = target_commands(
            "FROM b\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n",
            &[],
        );
        assert_eq!(
            cmds[1],
            Command::Env(vec![kv("abc", "bye"), kv("def", "hello")])
        );
        assert_eq!(cmds[2], Command::Env(vec![kv("ghi", "bye")]));
    }

    #[test]
    fn quotes_are_removed_from_env_and_label() {
        let cmds = target_commands(
            "FROM b\nENV MY_NAME=\"John Doe\" MY_DOG=Rex\\ The\\ Dog\nENV legacy \"quoted value\"\nLABEL \"com.example.vendor\"=\"ACME $X\" multi.label1=\"value1\"\n",
            &[],
        );
        assert_eq!(
            cmds[0],
            Command::Env(vec![kv("MY_NAME", "John Doe"), kv("MY_DOG", "Rex The Dog")])
        );
        assert_eq!(cmds[1], Command::Env(vec![kv("legacy", "quoted value")]));
        assert_eq!(
            cmds[2],
            Command::Label(vec![
                kv("com.example.vendor", "ACME "),
                kv("multi.label1", "value1")
            ])
        );
    }

    #[test]
    fn arg_scoping_reference_examples() {
        // ARG before FROM is usable in FROM, not after it unless re-declared.
        let text = "ARG CODE_VERSION=latest\nFROM base:${CODE_VERSION}\nENV a=$CODE_VERSION\nARG CODE_VERSION\nENV b=$CODE_VERSION\n";
        let p = plan(text, None, &[]).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("base:latest".into()));
        let steps = p.steps(&p.stages[0], &[]).unwrap();
        assert_eq!(
            steps[0].instruction.command,
            Command::Env(vec![kv("a", "")])
        );
        assert_eq!(
            steps[2].instruction.command,
            Command::Env(vec![kv("b", "latest")])
        );
        assert_eq!(
            steps[2].args,
            [("CODE_VERSION".to_string(), "latest".to_string())]
        );

        // --build-arg overrides both the global default and the stage's.
        let p = plan(text, None, &[("CODE_VERSION", "1.2")]).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("base:1.2".into()));

        // An ARG is in scope from its line on, to the end of its stage.
        let cmds = target_commands(
            "FROM busybox\nUSER ${username:-some_user}\nARG username\nUSER $username\n",
            &[("username", "what_user")],
        );
        assert_eq!(cmds[0], Command::User("some_user".into()));
        assert_eq!(cmds[2], Command::User("what_user".into()));
        let p = plan("FROM a AS one\nARG X=1\nFROM a\nENV x=\"$X\"\n", None, &[]).unwrap();
        let steps = p.steps(p.stages.last().unwrap(), &[]).unwrap();
        assert_eq!(
            steps[0].instruction.command,
            Command::Env(vec![kv("x", "")])
        );
    }

    #[test]
    fn env_wins_over_arg() {
        // The reference: ENV overrides an ARG of the same name, whatever the build arg.
        let cmds = target_commands(
            "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=v1.0.0\nWORKDIR /$CONT_IMG_VER\n",
            &[("CONT_IMG_VER", "v2.0.1")],
        );
        assert_eq!(cmds[2], Command::Workdir("/v1.0.0".into()));
        // And `ENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}` takes the build arg.
        let cmds = target_commands(
            "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\n",
            &[("CONT_IMG_VER", "v2.0.1")],
        );
        assert_eq!(cmds[1], Command::Env(vec![kv("CONT_IMG_VER", "v2.0.1")]));
        let cmds = target_commands(
            "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\n",
            &[],
        );
        assert_eq!(cmds[1], Command::Env(vec![kv("CONT_IMG_VER", "v1.0.0")]));
        // The base image's environment counts as ENV.
        let p = plan(
            "FROM golang\nARG GOPATH=/arg\nWORKDIR $GOPATH/src\n",
            None,
            &[],
        )
        .unwrap();
        let steps = p
            .steps(&p.stages[0], &[("GOPATH".to_string(), "/go".to_string())])
            .unwrap();
        assert_eq!(
            steps[1].instruction.command,
            Command::Workdir("/go/src".into())
        );
    }

    #[test]
    fn predefined_platform_args() {
        let text = "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETOS TARGETARCH\nENV GOOS=$TARGETOS GOARCH=$TARGETARCH\nENV unset=$TARGETVARIANT\nFROM alpine:$TARGETARCH\nENV x=$TARGETARCH\n";
        let p = plan(text, Some("build"), &[]).unwrap();
        assert_eq!(p.stages.len(), 1);
        assert_eq!(
            p.stages[0].platform,
            Some(Platform::new("linux", "amd64", None))
        );
        assert_eq!(p.global_arg("TARGETPLATFORM"), Some("linux/arm64"));
        assert_eq!(p.global_arg("BUILDOS"), Some("linux"));
        let steps = p.steps(&p.stages[0], &[]).unwrap();
        assert_eq!(
            steps[1].instruction.command,
            Command::Env(vec![kv("GOOS", "linux"), kv("GOARCH", "arm64")])
        );
        // Not declared in the stage: not visible.
        assert_eq!(
            steps[2].instruction.command,
            Command::Env(vec![kv("unset", "")])
        );
        let p = plan(text, None, &[]).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("alpine:arm64".into()));
        let steps = p.steps(&p.stages[0], &[]).unwrap();
        assert_eq!(
            steps[0].instruction.command,
            Command::Env(vec![kv("x", "")])
        );
    }

    #[test]
    fn proxy_and_unused_build_args() {
        let p = plan(
            "ARG used_global\nFROM a AS x\nARG in_unused_stage\nFROM a\nARG used\nRUN env\n",
            None,
            &[
                ("used", "1"),
                ("used_global", "2"),
                ("in_unused_stage", "3"),
                ("nobody", "4"),
                ("HTTP_PROXY", "http://proxy:3128"),
            ],
        )
        .unwrap();
        assert_eq!(p.unused_build_args, ["in_unused_stage", "nobody"]);
        assert_eq!(
            p.proxy_args,
            [("HTTP_PROXY".to_string(), "http://proxy:3128".to_string())]
        );
        let steps = p.steps(p.stages.last().unwrap(), &[]).unwrap();
        assert_eq!(steps[1].args, [("used".to_string(), "1".to_string())]);
    }

    #[test]
    fn stages_by_name_and_index_in_dependency_order() {
        let text = "\
FROM busybox AS tools
RUN echo tools
FROM alpine AS unused
RUN echo never
FROM tools AS build
COPY --from=0 /x /y
RUN --mount=type=bind,from=assets,target=/a cp /a/* /out
FROM scratch AS assets
COPY logo.png /
FROM scratch
COPY --from=build /out /
COPY --from=docker.io/library/nginx:latest /etc/nginx/nginx.conf /
";
        let p = plan(text, None, &[]).unwrap();
        assert_eq!(names(&p), ["tools", "assets", "build", "4"]);
        let build = &p.stages[2];
        assert_eq!(build.base, Base::Stage(0));
        assert_eq!(build.dependencies, [0, 3]);
        assert_eq!(p.stages[3].base, Base::Scratch);
        assert_eq!(p.stages[3].dependencies, [2]);
        assert_eq!(
            p.stages[3].images,
            [(12, "docker.io/library/nginx:latest".to_string())]
        );
        assert!(p.stages[2].images.is_empty());
        assert_eq!(p.stage_for("BUILD"), Some(2));
        assert_eq!(p.stage_for("0"), Some(0));
        assert_eq!(p.stage_for("1"), None);
        assert_eq!(p.stage_for("docker.io/library/nginx:latest"), None);

        let p = plan(text, Some("Assets"), &[]).unwrap();
        assert_eq!(names(&p), ["assets"]);
        assert_eq!(p.stages[0].instructions.len(), 1);
    }

    #[test]
    fn copy_from_is_expanded() {
        let p = plan(
            "ARG SRC=one\nFROM a AS one\nFROM a AS two\nFROM b\nARG SRC\nCOPY --from=$SRC /x /x\n",
            None,
            &[],
        )
        .unwrap();
        assert_eq!(names(&p), ["one", "2"]);
    }

    #[test]
    fn stage_errors() {
        assert_eq!(
            plan("FROM a AS x\nFROM b AS X\n", None, &[])
                .unwrap_err()
                .to_string(),
            "Dockerfile:2: duplicate stage name \"x\""
        );
        assert_eq!(
            plan("FROM a AS x\n", Some("y"), &[])
                .unwrap_err()
                .to_string(),
            "target stage \"y\" could not be found"
        );
        assert_eq!(
            plan(
                "FROM a AS one\nCOPY --from=two / /\nFROM b AS two\nCOPY --from=one / /\n",
                None,
                &[]
            )
            .unwrap_err()
            .to_string(),
            "Dockerfile:2: circular dependency detected on stage: two"
        );
        assert_eq!(
            plan("FROM a AS self\nCOPY --from=self / /\n", None, &[])
                .unwrap_err()
                .to_string(),
            "Dockerfile:2: circular dependency detected on stage: self"
        );
        assert_eq!(
            plan("FROM a\nCOPY --from=5 / /\n", None, &[])
                .unwrap_err()
                .to_string(),
            "Dockerfile:2: invalid stage index 5: the Dockerfile has 1 stages"
        );
        assert_eq!(
            plan("ARG x\nRUN echo\nFROM a\n", None, &[])
                .unwrap_err()
                .to_string(),
            "Dockerfile:2: RUN instruction before any FROM: no build stage in current context"
        );
        assert_eq!(
            plan("ARG x\n", None, &[]).unwrap_err().to_string(),
            "Dockerfile:1: no build stage in current context: the Dockerfile has no FROM"
        );
        assert_eq!(
            plan("ARG IMG\nFROM $IMG\n", None, &[])
                .unwrap_err()
                .to_string(),
            "Dockerfile:2: base name ($IMG) should not be blank"
        );
        assert_eq!(
            plan("FROM --platform=linux a\n", None, &[])
                .unwrap_err()
                .to_string()
                .split(':')
                .take(3)
                .collect::<Vec<_>>()
                .join(":"),
            "Dockerfile:1: failed to parse platform linux"
        );
        // A stage can only FROM an earlier stage; a later name is an image.
        let p = plan("FROM later\nFROM a AS later\n", Some("later"), &[]).unwrap();
        assert_eq!(names(&p), ["later"]);
        // Errors in stages the target does not need do not matter.
        assert!(plan("FROM a AS bad\nUSER ${x\nFROM b\n", None, &[]).is_ok());
    }

    #[test]
    fn expansion_errors_name_the_line() {
        assert_eq!(
            plan("FROM a\nWORKDIR ${x\n", None, &[])
                .and_then(|p| p.steps(&p.stages[0], &[]))
                .unwrap_err()
                .to_string(),
            "Dockerfile:2: failed to process \"${x\": missing '}' in variable substitution"
        );
        assert_eq!(
            plan("FROM a\nEXPOSE 80/xyz\n", None, &[])
                .and_then(|p| p.steps(&p.stages[0], &[]))
                .unwrap_err()
                .to_string(),
            "Dockerfile:2: invalid proto: xyz"
        );
        assert_eq!(
            plan("FROM a\nSTOPSIGNAL $S\n", None, &[])
                .and_then(|p| p.steps(&p.stages[0], &[]))
                .unwrap_err()
                .to_string()
                .split(':')
                .take(2)
                .collect::<Vec<_>>()
                .join(":"),
            "Dockerfile:2"
        );
    }

    #[test]
    fn what_expands_and_what_does_not() {
        let cmds = target_commands(
            "FROM a\nARG P=8080 V=/data U=app S=SIGTERM\nEXPOSE $P ${P}/udp\nVOLUME $V [\"x\"]\nVOLUME [\"$V\"]\nUSER $U\nSTOPSIGNAL $S\nRUN --mount=type=cache,target=$V,uid=$P echo $P\nCMD echo $P\nENTRYPOINT [\"echo\", \"$P\"]\nHEALTHCHECK CMD check $P\nONBUILD RUN echo $P\nCOPY --chown=$U:$U --chmod=755 <<EOF <<'RAW' $V/\n$P \"quoted\"\nEOF\n$P\nRAW\n",
            &[],
        );
        assert_eq!(
            cmds[1],
            Command::Expose(vec!["8080".into(), "8080/udp".into()])
        );
        assert_eq!(cmds[2], Command::Volume(vec!["/data".into(), "[x]".into()]));
        assert_eq!(cmds[3], Command::Volume(vec!["/data".into()]));
        assert_eq!(cmds[4], Command::User("app".into()));
        assert_eq!(cmds[5], Command::StopSignal("SIGTERM".into()));
        let Command::Run(run) = &cmds[6] else {
            panic!()
        };
        assert_eq!(run.command, CommandLine::Shell("echo $P".into()));
        assert_eq!(run.mounts[0].target.as_deref(), Some("/data"));
        assert_eq!(run.mounts[0].uid, Some(8080));
        assert_eq!(cmds[7], Command::Cmd(CommandLine::Shell("echo $P".into())));
        assert_eq!(
            cmds[8],
            Command::Entrypoint(CommandLine::Exec(vec!["echo".into(), "$P".into()]))
        );
        let Command::Healthcheck(Healthcheck::Check { test, .. }) = &cmds[9] else {
            panic!()
        };
        assert_eq!(*test, CommandLine::Shell("check $P".into()));
        let Command::Onbuild(ob) = &cmds[10] else {
            panic!()
        };
        assert_eq!(ob.trigger, "RUN echo $P");
        let Command::Copy(c) = &cmds[11] else {
            panic!()
        };
        assert_eq!(c.chown.as_deref(), Some("app:app"));
        assert_eq!(c.dest, "/data/");
        assert_eq!(
            c.sources,
            [
                Source::Heredoc(Heredoc {
                    name: "EOF".into(),
                    content: "8080 \"quoted\"\n".into(),
                    expand: true,
                    chomp: false,
                    fd: 0
                }),
                Source::Heredoc(Heredoc {
                    name: "RAW".into(),
                    content: "$P\n".into(),
                    expand: false,
                    chomp: false,
                    fd: 0
                }),
            ]
        );
    }

    #[test]
    fn reference_heredoc_examples() {
        let text = "FROM debian\nARG FOO=bar\nRUN <<EOT bash\n  set -ex\n  apt-get update\nEOT\nRUN <<EOT\n#!/usr/bin/env python\nprint(\"hello world\")\nEOT\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\nCOPY <<-EOT /script.sh\n\techo \"hello ${FOO}\"\n\tEOT\nCOPY <<-\"EOT\" /script.sh\n\techo \"hello ${FOO}\"\n\tEOT\n";
        let cmds = target_commands(text, &[]);
        let runs: Vec<(&CommandLine, Vec<(&str, &str)>)> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Run(r) => Some((
                    &r.command,
                    r.heredocs
                        .iter()
                        .map(|h| (h.name.as_str(), h.content.as_str()))
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            runs,
            [
                (
                    &CommandLine::Shell("<<EOT bash".into()),
                    vec![("EOT", "  set -ex\n  apt-get update\n")]
                ),
                (
                    &CommandLine::Shell("<<EOT".into()),
                    vec![("EOT", "#!/usr/bin/env python\nprint(\"hello world\")\n")]
                ),
                (
                    &CommandLine::Shell("<<FILE1 cat > file1 && <<FILE2 cat > file2".into()),
                    vec![("FILE1", "I am\nfirst\n"), ("FILE2", "I am\nsecond\n")]
                ),
            ]
        );
        let copies: Vec<&Source> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Copy(c) => c.sources.first(),
                _ => None,
            })
            .collect();
        let body = |s: &Source| match s {
            Source::Heredoc(h) => h.content.clone(),
            Source::Path(p) => panic!("a path {p}"),
        };
        assert_eq!(body(copies[0]), "echo \"hello bar\"\n");
        assert_eq!(body(copies[1]), "echo \"hello ${FOO}\"\n");
    }

    #[test]
    fn escape_directive_applies_to_expansion() {
        let cmds = target_commands(
            "# escape=`\nFROM windows\nENV dir=C:\\data\nWORKDIR $dir\\sub\nCOPY `$dir c:\\\n",
            &[],
        );
        assert_eq!(cmds[1], Command::Workdir("C:\\data\\sub".into()));
        let Command::Copy(c) = &cmds[2] else { panic!() };
        assert_eq!(c.sources, [Source::Path("$dir".into())]);
        assert_eq!(c.dest, "c:\\");
    }

    #[test]
    fn stopsignal_is_checked_after_expansion() {
        for ok in ["SIGKILL", "KILL", "9", "sigrtmin+3"] {
            let cmds = target_commands(&format!("FROM a\nARG S={ok}\nSTOPSIGNAL $S\n"), &[]);
            assert_eq!(cmds[1], Command::StopSignal(ok.into()));
        }
        let err = plan("FROM a\nSTOPSIGNAL SIGNOPE\n", None, &[])
            .and_then(|p| p.steps(&p.stages[0], &[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("Dockerfile:2: invalid STOPSIGNAL \"SIGNOPE\": "),
            "{err}"
        );
    }

    #[test]
    fn steps_report_used_variables() {
        let p = plan(
            "FROM a\nARG A B\nWORKDIR /$A\nRUN x\n",
            None,
            &[("A", "1"), ("B", "2")],
        )
        .unwrap();
        let steps = p.steps(&p.stages[0], &[]).unwrap();
        assert_eq!(steps[1].used.iter().collect::<Vec<_>>(), ["A"]);
        assert_eq!(
            steps[2].args,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string())
            ]
        );
    }
}
