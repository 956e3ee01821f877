//! Typed instructions: what each keyword's arguments and flags mean, checked as Docker
//! checks them. Words are kept as written (quotes and `$` references included); `plan`
//! expands them in the stage's environment.

use std::time::Duration;

use crate::mount::{Mount, parse_mount};
use crate::parse::{Heredoc, Node, heredoc_word, json_array, node_from_line, split_words};

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// First and last line (1-based) in the Dockerfile, heredoc bodies included.
    pub line: usize,
    pub end_line: usize,
    /// The logical line as written (continuations joined), for history and messages.
    pub source: String,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Label(Vec<KeyValue>),
    /// Deprecated; the executor records it as the image's author.
    Maintainer(String),
    Expose(Vec<String>),
    Env(Vec<KeyValue>),
    Add(Copy),
    Copy(Copy),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    Onbuild(OnBuild),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
}

impl Command {
    /// The keyword in Docker's spelling.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Label(_) => "LABEL",
            Command::Maintainer(_) => "MAINTAINER",
            Command::Expose(_) => "EXPOSE",
            Command::Env(_) => "ENV",
            Command::Add(_) => "ADD",
            Command::Copy(_) => "COPY",
            Command::Volume(_) => "VOLUME",
            Command::User(_) => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::Arg(_) => "ARG",
            Command::Onbuild(_) => "ONBUILD",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
        }
    }
}

/// `FROM [--platform=<p>] <image> [AS <name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    /// Lower-cased, as Docker matches stage names.
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// The exec form (`["a", "b"]`) or the shell form (text for the shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Exec(Vec<String>),
    Shell(String),
}

/// `RUN [--mount=…] [--network=…] [--security=…] <command>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// For the shell form with heredocs, the text still holds the `<<EOF` words: a RUN that
    /// is only `<<EOF` runs the body as its script; otherwise the shell reads the bodies.
    pub command: CommandLine,
    pub heredocs: Vec<Heredoc>,
    /// The `--mount` values as written.
    pub mount_specs: Vec<String>,
    /// The mounts, parsed. In [`crate::Dockerfile::parse`]'s output this is empty when any
    /// value holds a `$` (read after expansion); in a [`crate::Step`] it is always complete.
    pub mounts: Vec<Mount>,
    pub network: Option<NetworkMode>,
    pub security: Option<Security>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Sandbox,
    Insecure,
}

/// One source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path in the context or the `--from` stage/image, a URL or git address for ADD.
    Path(String),
    /// `COPY <<EOF /dst`: the body becomes a file named after the delimiter.
    Heredoc(Heredoc),
}

/// COPY and ADD with their flags (ADD-only flags are None/false for COPY).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from=<stage name|stage index|image>`.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD only.
    pub checksum: Option<String>,
    /// ADD only.
    pub keep_git_dir: bool,
    /// ADD only: `--unpack=true|false`, None for the default (local archives are unpacked).
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// `ONBUILD <instruction>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnBuild {
    /// The trigger as written (what goes into the image config's `OnBuild`).
    pub trigger: String,
    pub command: Box<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Check {
        /// Exec form maps to `["CMD", …]`, shell form to `["CMD-SHELL", text]`.
        test: CommandLine,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// The flags an instruction accepts, and their values once parsed.
struct Flags {
    values: Vec<(String, Option<String>)>,
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Text,
    Bool,
    List,
}

impl Flags {
    fn parse(node: &Node, allowed: &[(&str, FlagKind)]) -> Result<Flags, String> {
        let mut values: Vec<(String, Option<String>)> = Vec::new();
        for word in &node.flags {
            let body = word.trim_start_matches('-');
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let name = name.to_ascii_lowercase();
            let Some((_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            match kind {
                FlagKind::Text | FlagKind::List if value.is_none() => {
                    return Err(format!("missing a value on flag: --{name}"));
                }
                FlagKind::Bool => {
                    if let Some(v) = &value
                        && !matches!(v.to_ascii_lowercase().as_str(), "true" | "false")
                    {
                        return Err(format!(
                            "expecting boolean value for flag --{name}, not: {v}"
                        ));
                    }
                }
                _ => {}
            }
            if *kind != FlagKind::List && values.iter().any(|(n, _)| *n == name) {
                return Err(format!("duplicate flag specified: --{name}"));
            }
            values.push((name, value));
        }
        Ok(Flags { values })
    }

    /// The value of a text flag; `--from=` (empty) counts as not given, as in Docker.
    fn text(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().is_none_or(|v| v.eq_ignore_ascii_case("true")))
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
}

fn command_line(rest: &str) -> Result<CommandLine, String> {
    Ok(match json_array(rest)? {
        Some(v) => CommandLine::Exec(v),
        None => CommandLine::Shell(rest.to_string()),
    })
}

/// JSON list or whitespace-separated words (ADD, COPY, VOLUME).
fn json_or_words(rest: &str) -> Result<(Vec<String>, bool), String> {
    Ok(match json_array(rest)? {
        Some(v) => (v, true),
        None => (rest.split_whitespace().map(str::to_string).collect(), false),
    })
}

fn key_values(keyword: &str, rest: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let words = split_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(format!("{keyword} requires at least one argument"));
    };
    if !first.contains('=') {
        // Legacy `ENV name value`: the value is the rest of the line.
        let mut parts = rest.splitn(2, char::is_whitespace);
        let key = parts.next().unwrap_or_default();
        let value = parts.next().map(str::trim_start).unwrap_or_default();
        if value.is_empty() {
            return Err(format!("{keyword} must have two arguments"));
        }
        return Ok(vec![KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        }]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(format!("{keyword} names can not be blank")),
            Some((k, v)) => Ok(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            }),
            None => Err(format!(
                "syntax error - can't find = in {w:?}. Must be of the form: name=value"
            )),
        })
        .collect()
}

fn duration_flag(flags: &Flags, name: &str) -> Result<Option<Duration>, String> {
    let Some(text) = flags.text(name) else {
        return Ok(None);
    };
    let too_small = || format!("interval {name:?} cannot be less than 1ms");
    if let Some(positive) = text.strip_prefix('-')
        && go_duration(positive).is_some()
    {
        return Err(too_small());
    }
    let d = go_duration(&text).ok_or_else(|| format!("time: invalid duration {text:?}"))?;
    if d < Duration::from_millis(1) {
        return Err(too_small());
    }
    Ok(Some(d))
}

/// A duration as Go writes it (`1m30s`, `1.5s`, `500ms`, `0`), what Docker accepts.
fn go_duration(text: &str) -> Option<Duration> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos;
    }
    // Durations beyond u64 nanoseconds (about 584 years) are refused, as Go's are.
    (total < u64::MAX as f64).then(|| Duration::from_nanos(total as u64))
}

fn stage_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

const NONE: &[(&str, FlagKind)] = &[];

/// Interprets one node. `escape` is the file's escape character.
pub(crate) fn instruction(node: &Node, escape: char) -> Result<Instruction, String> {
    let command = command(node, escape)?;
    Ok(Instruction {
        line: node.line,
        end_line: node.end_line,
        source: node.original.clone(),
        command,
    })
}

fn command(node: &Node, escape: char) -> Result<Command, String> {
    let keyword = node.keyword.to_ascii_uppercase();
    let rest = node.rest.as_str();
    let at_least_one = || format!("{keyword} requires at least one argument");
    let exactly_one = || format!("{keyword} requires exactly one argument");
    let none = || Flags::parse(node, NONE);
    Ok(match keyword.as_str() {
        "FROM" => {
            let flags = Flags::parse(node, &[("platform", FlagKind::Text)])?;
            let args: Vec<&str> = rest.split_whitespace().collect();
            let name = match args.as_slice() {
                [_] => None,
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    let name = name.to_ascii_lowercase();
                    if !stage_name_ok(&name) {
                        return Err(format!(
                            "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                        ));
                    }
                    Some(name)
                }
                _ => return Err("FROM requires either one or three arguments".to_string()),
            };
            Command::From(From {
                image: args[0].to_string(),
                name,
                platform: flags.text("platform"),
            })
        }
        "RUN" => {
            let flags = Flags::parse(
                node,
                &[
                    ("mount", FlagKind::List),
                    ("network", FlagKind::Text),
                    ("security", FlagKind::Text),
                ],
            )?;
            if rest.is_empty() {
                return Err(at_least_one());
            }
            let mount_specs = flags.list("mount");
            // Options with substitutions are read once expanded (`BuildPlan::steps`).
            let mounts = if mount_specs.iter().any(|m| m.contains('$')) {
                Vec::new()
            } else {
                mount_specs
                    .iter()
                    .map(|m| parse_mount(m))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?
            };
            let network = match flags.text("network").as_deref() {
                None => None,
                Some("default") => Some(NetworkMode::Default),
                Some("none") => Some(NetworkMode::None),
                Some("host") => Some(NetworkMode::Host),
                Some(other) => return Err(format!("unsupported network mode {other:?}")),
            };
            let security = match flags.text("security").as_deref() {
                None => None,
                Some("sandbox") => Some(Security::Sandbox),
                Some("insecure") => Some(Security::Insecure),
                Some(other) => return Err(format!("unsupported security mode {other:?}")),
            };
            Command::Run(Run {
                command: command_line(rest)?,
                heredocs: node.heredocs.clone(),
                mount_specs,
                mounts,
                network,
                security,
            })
        }
        "CMD" | "ENTRYPOINT" => {
            none()?;
            if rest.is_empty() {
                return Err(at_least_one());
            }
            let line = command_line(rest)?;
            if keyword == "CMD" {
                Command::Cmd(line)
            } else {
                Command::Entrypoint(line)
            }
        }
        "SHELL" => {
            none()?;
            match json_array(rest)? {
                Some(v) if v.is_empty() => return Err(at_least_one()),
                Some(v) => Command::Shell(v),
                None => return Err("SHELL requires the arguments to be in JSON form".into()),
            }
        }
        "LABEL" | "ENV" => {
            none()?;
            let pairs = key_values(&keyword, rest, escape)?;
            if keyword == "ENV" {
                Command::Env(pairs)
            } else {
                Command::Label(pairs)
            }
        }
        "MAINTAINER" => {
            none()?;
            if rest.is_empty() {
                return Err(exactly_one());
            }
            Command::Maintainer(rest.to_string())
        }
        "EXPOSE" => {
            none()?;
            if rest.is_empty() {
                return Err(at_least_one());
            }
            Command::Expose(rest.split_whitespace().map(str::to_string).collect())
        }
        "COPY" | "ADD" => {
            let add = keyword == "ADD";
            let mut allowed = vec![
                ("from", FlagKind::Text),
                ("chown", FlagKind::Text),
                ("chmod", FlagKind::Text),
                ("link", FlagKind::Bool),
                ("exclude", FlagKind::List),
                ("parents", FlagKind::Bool),
            ];
            if add {
                allowed.retain(|(n, _)| *n != "from");
                allowed.extend([
                    ("checksum", FlagKind::Text),
                    ("keep-git-dir", FlagKind::Bool),
                    ("unpack", FlagKind::Bool),
                ]);
            }
            let flags = Flags::parse(node, &allowed)?;
            let (mut words, json) = json_or_words(rest)?;
            if words.len() < 2 {
                return Err(format!(
                    "{keyword} requires at least two arguments, but only {} provided. Destination could not be determined",
                    if words.is_empty() {
                        "none was"
                    } else {
                        "one was"
                    }
                ));
            }
            let dest = words.pop().unwrap_or_default();
            if !json && heredoc_word(&dest).is_some() {
                return Err(format!(
                    "{keyword} cannot accept a heredoc as a destination"
                ));
            }
            let sources = words
                .into_iter()
                .map(|w| {
                    let heredoc = (!json)
                        .then(|| heredoc_word(&w))
                        .flatten()
                        .and_then(|h| node.heredocs.iter().find(|d| d.name == h.name));
                    match heredoc {
                        Some(h) => Source::Heredoc(h.clone()),
                        None => Source::Path(w),
                    }
                })
                .collect();
            let checksum = flags.text("checksum");
            Command::Add(Copy {
                sources,
                dest,
                from: flags.text("from"),
                chown: flags.text("chown"),
                chmod: flags.text("chmod"),
                link: flags.bool("link").unwrap_or(false),
                parents: flags.bool("parents").unwrap_or(false),
                exclude: flags.list("exclude"),
                checksum,
                keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
                unpack: flags.bool("unpack"),
            })
            .into_copy_if(!add)
        }
        "VOLUME" => {
            none()?;
            let (words, _) = json_or_words(rest)?;
            if words.is_empty() {
                return Err(at_least_one());
            }
            if words.iter().any(|w| w.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Command::Volume(words)
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" => {
            none()?;
            if rest.is_empty() {
                return Err(exactly_one());
            }
            if keyword == "STOPSIGNAL" && rest.split_whitespace().count() != 1 {
                return Err(exactly_one());
            }
            let value = rest.to_string();
            match keyword.as_str() {
                "USER" => Command::User(value),
                "WORKDIR" => Command::Workdir(value),
                _ => Command::StopSignal(value),
            }
        }
        "ARG" => {
            none()?;
            let words = split_words(rest, escape);
            if words.is_empty() {
                return Err(at_least_one());
            }
            let decls = words
                .into_iter()
                .map(|w| {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (w, None),
                    };
                    if name.is_empty() {
                        return Err("ARG names can not be blank".to_string());
                    }
                    Ok(ArgDecl { name, default })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Command::Arg(decls)
        }
        "ONBUILD" => {
            none()?;
            if rest.is_empty() {
                return Err(at_least_one());
            }
            let inner = node_from_line(rest, node.line);
            match inner.keyword.to_ascii_uppercase().as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into());
                }
                k @ ("FROM" | "MAINTAINER") => {
                    return Err(format!("{k} isn't allowed as an ONBUILD trigger"));
                }
                _ => {}
            }
            let mut inner = inner;
            inner.heredocs.clone_from(&node.heredocs);
            // The trigger carries its heredoc bodies so the later build can parse it again.
            let mut trigger = rest.to_string();
            for h in &node.heredocs {
                trigger.push('\n');
                trigger.push_str(&h.content);
                trigger.push_str(&h.name);
            }
            Command::Onbuild(OnBuild {
                trigger,
                command: Box::new(command(&inner, escape)?),
            })
        }
        "HEALTHCHECK" => {
            let flags = Flags::parse(
                node,
                &[
                    ("interval", FlagKind::Text),
                    ("timeout", FlagKind::Text),
                    ("start-period", FlagKind::Text),
                    ("start-interval", FlagKind::Text),
                    ("retries", FlagKind::Text),
                ],
            )?;
            let (kind, cmd) = match rest.find(char::is_whitespace) {
                Some(p) => (&rest[..p], rest[p..].trim()),
                None => (rest, ""),
            };
            match kind.to_ascii_uppercase().as_str() {
                "" => return Err(at_least_one()),
                "NONE" => {
                    if !cmd.is_empty() {
                        return Err("HEALTHCHECK NONE takes no arguments".into());
                    }
                    Command::Healthcheck(Healthcheck::None)
                }
                "CMD" => {
                    if cmd.is_empty() {
                        return Err("Missing command after HEALTHCHECK CMD".into());
                    }
                    let retries = match flags.text("retries") {
                        None => None,
                        Some(r) => match r.parse::<i32>() {
                            Ok(n) if n < 1 => {
                                return Err(format!("--retries must be at least 1 (not {n})"));
                            }
                            Ok(n) => Some(n.unsigned_abs()),
                            Err(_) => return Err(format!("invalid value {r:?} for --retries")),
                        },
                    };
                    Command::Healthcheck(Healthcheck::Check {
                        test: command_line(cmd)?,
                        interval: duration_flag(&flags, "interval")?,
                        timeout: duration_flag(&flags, "timeout")?,
                        start_period: duration_flag(&flags, "start-period")?,
                        start_interval: duration_flag(&flags, "start-interval")?,
                        retries,
                    })
                }
                _ => return Err(format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)")),
            }
        }
        _ => {
            return Err(match suggest(&keyword) {
                Some(s) => format!("unknown instruction: {keyword} (did you mean {s}?)"),
                None => format!("unknown instruction: {keyword}"),
            });
        }
    })
}

impl Command {
    fn into_copy_if(self, copy: bool) -> Command {
        match self {
            Command::Add(c) if copy => Command::Copy(c),
            other => other,
        }
    }
}

const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The keyword within edit distance 2 of a misspelt one, as Docker suggests.
fn suggest(word: &str) -> Option<&'static str> {
    KEYWORDS
        .iter()
        .map(|k| (levenshtein(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dockerfile;
    use crate::mount::MountType;

    fn commands(text: &str) -> Vec<Command> {
        Dockerfile::parse("Dockerfile", text)
            .unwrap()
            .instructions
            .into_iter()
            .map(|i| i.command)
            .collect()
    }

    fn one(line: &str) -> Command {
        commands(&format!("FROM a\n{line}\n")).remove(1)
    }

    fn error(text: &str) -> String {
        Dockerfile::parse("Dockerfile", text)
            .unwrap_err()
            .to_string()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            commands("from --platform=$BUILDPLATFORM golang:1.22 As Build\n")[0],
            Command::From(From {
                image: "golang:1.22".into(),
                name: Some("build".into()),
                platform: Some("$BUILDPLATFORM".into()),
            })
        );
        assert_eq!(
            error("FROM a b\n"),
            "Dockerfile:1: FROM requires either one or three arguments"
        );
        assert_eq!(
            error("FROM a AS 1x\n"),
            "Dockerfile:1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
        );
        assert_eq!(
            error("FROM --plat=x a\n"),
            "Dockerfile:1: unknown flag: --plat"
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_unknown_ones_fail() {
        assert_eq!(one("wOrKdIr /app"), Command::Workdir("/app".into()));
        assert_eq!(
            error("FROM a\n\n\n\n\n\nFORM b\n"),
            "Dockerfile:7: unknown instruction: FORM (did you mean FROM?)"
        );
        assert_eq!(
            error("FROM a\nFOOBAR x\n"),
            "Dockerfile:2: unknown instruction: FOOBAR"
        );
    }

    #[test]
    fn exec_and_shell_forms() {
        assert_eq!(
            one(r#"CMD ["echo", "hi there"]"#),
            Command::Cmd(CommandLine::Exec(s(&["echo", "hi there"])))
        );
        assert_eq!(
            one("CMD echo hi"),
            Command::Cmd(CommandLine::Shell("echo hi".into()))
        );
        // Not valid JSON (single quotes): the shell form, as Docker does.
        assert_eq!(
            one("ENTRYPOINT ['top', '-b']"),
            Command::Entrypoint(CommandLine::Shell("['top', '-b']".into()))
        );
        assert_eq!(one("CMD []"), Command::Cmd(CommandLine::Exec(vec![])));
        assert_eq!(
            error("FROM a\nRUN [\"a\", 1]\n"),
            "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
        );
        assert_eq!(
            error("FROM a\nRUN\n"),
            "Dockerfile:2: RUN requires at least one argument"
        );
        // The reference's example: backslashes in JSON must be escaped.
        assert_eq!(
            one(r#"RUN ["c:\\windows\\system32\\tasklist.exe"]"#),
            Command::Run(Run {
                command: CommandLine::Exec(s(&["c:\\windows\\system32\\tasklist.exe"])),
                heredocs: vec![],
                mount_specs: vec![],
                mounts: vec![],
                network: None,
                security: None,
            })
        );
    }

    #[test]
    fn run_flags() {
        let Command::Run(run) = one(
            "RUN --mount=type=cache,target=/var/cache/apt --mount=type=secret,id=tok --network=none --security=insecure make",
        ) else {
            panic!("not a RUN");
        };
        assert_eq!(run.command, CommandLine::Shell("make".into()));
        assert_eq!(
            run.mounts.iter().map(|m| m.kind).collect::<Vec<_>>(),
            [MountType::Cache, MountType::Secret]
        );
        assert_eq!(run.network, Some(NetworkMode::None));
        assert_eq!(run.security, Some(Security::Insecure));
        assert_eq!(
            error("FROM a\nRUN --network=bridge x\n"),
            "Dockerfile:2: unsupported network mode \"bridge\""
        );
        assert_eq!(
            error("FROM a\nRUN --mount=type=nfs,target=/x x\n"),
            "Dockerfile:2: unsupported mount type \"nfs\""
        );
        assert_eq!(
            error("FROM a\nRUN --network x\n"),
            "Dockerfile:2: missing a value on flag: --network"
        );
        assert_eq!(
            error("FROM a\nRUN --network=none --network=host x\n"),
            "Dockerfile:2: duplicate flag specified: --network"
        );
    }

    #[test]
    fn run_heredocs() {
        let cmds = commands("FROM a\nRUN <<EOF\napt-get update\napt-get install -y vim\nEOF\n");
        let Command::Run(run) = &cmds[1] else {
            panic!("not a RUN");
        };
        assert_eq!(run.command, CommandLine::Shell("<<EOF".into()));
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(
            run.heredocs[0].content,
            "apt-get update\napt-get install -y vim\n"
        );
        assert!(run.heredocs[0].expand);
    }

    #[test]
    fn copy_and_add() {
        assert_eq!(
            one(
                "COPY --from=build --chown=55:mygroup --chmod=644 --link --parents --exclude=*.tmp --exclude=x a b /dst/"
            ),
            Command::Copy(Copy {
                sources: vec![Source::Path("a".into()), Source::Path("b".into())],
                dest: "/dst/".into(),
                from: Some("build".into()),
                chown: Some("55:mygroup".into()),
                chmod: Some("644".into()),
                link: true,
                parents: true,
                exclude: s(&["*.tmp", "x"]),
                ..Copy::default()
            })
        );
        assert_eq!(
            one(r#"COPY ["hom* file", "/my dir/"]"#),
            Command::Copy(Copy {
                sources: vec![Source::Path("hom* file".into())],
                dest: "/my dir/".into(),
                ..Copy::default()
            })
        );
        assert_eq!(
            one(
                "ADD --checksum=sha256:24454f83 --keep-git-dir=true --link=false https://x/y.tar /"
            ),
            Command::Add(Copy {
                sources: vec![Source::Path("https://x/y.tar".into())],
                dest: "/".into(),
                checksum: Some("sha256:24454f83".into()),
                keep_git_dir: true,
                ..Copy::default()
            })
        );
        assert_eq!(
            error("FROM a\nCOPY --checksum=x a /\n"),
            "Dockerfile:2: unknown flag: --checksum"
        );
        assert_eq!(
            error("FROM a\nADD --from=x a /\n"),
            "Dockerfile:2: unknown flag: --from"
        );
        assert_eq!(
            error("FROM a\nCOPY --link=maybe a /\n"),
            "Dockerfile:2: expecting boolean value for flag --link, not: maybe"
        );
        assert_eq!(
            error("FROM a\nCOPY a <<EOF\nx\nEOF\n"),
            "Dockerfile:2: COPY cannot accept a heredoc as a destination"
        );
        assert_eq!(
            error("FROM a\nCOPY onlyone\n"),
            "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
    }

    #[test]
    fn copy_heredocs() {
        let cmds = commands(
            "FROM a\nCOPY <<EOF1 <<\"EOF2\" /dst/\nfirst $x\nEOF1\nsecond $x\nEOF2\nCOPY <<-EOT /script\n\t#!/bin/sh\n\techo hi\n\tEOT\n",
        );
        let Command::Copy(c) = &cmds[1] else {
            panic!("not a COPY");
        };
        assert_eq!(c.dest, "/dst/");
        let bodies: Vec<_> = c
            .sources
            .iter()
            .map(|s| match s {
                Source::Heredoc(h) => (h.name.as_str(), h.content.as_str(), h.expand),
                Source::Path(_) => panic!("a path"),
            })
            .collect();
        assert_eq!(
            bodies,
            [("EOF1", "first $x\n", true), ("EOF2", "second $x\n", false)]
        );
        let Command::Copy(c) = &cmds[2] else {
            panic!("not a COPY");
        };
        assert_eq!(
            c.sources,
            [Source::Heredoc(Heredoc {
                name: "EOT".into(),
                content: "#!/bin/sh\necho hi\n".into(),
                expand: true,
                chomp: true,
                fd: 0,
            })]
        );
    }

    #[test]
    fn env_and_label_forms() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(
            one(r#"ENV MY_NAME="John Doe" MY_DOG=Rex\ The\ Dog MY_CAT=fluffy"#),
            Command::Env(vec![
                kv("MY_NAME", "\"John Doe\""),
                kv("MY_DOG", "Rex\\ The\\ Dog"),
                kv("MY_CAT", "fluffy"),
            ])
        );
        assert_eq!(
            one("ENV MY_VAR my-value is long"),
            Command::Env(vec![kv("MY_VAR", "my-value is long")])
        );
        assert_eq!(
            one(r#"LABEL "com.example.vendor"="ACME Incorporated" version=1.0"#),
            Command::Label(vec![
                kv("\"com.example.vendor\"", "\"ACME Incorporated\""),
                kv("version", "1.0"),
            ])
        );
        assert_eq!(
            one("LABEL old style"),
            Command::Label(vec![kv("old", "style")])
        );
        assert_eq!(
            error("FROM a\nENV X\n"),
            "Dockerfile:2: ENV must have two arguments"
        );
        assert_eq!(
            error("FROM a\nENV =x\n"),
            "Dockerfile:2: ENV names can not be blank"
        );
        assert_eq!(
            error("FROM a\nENV a=b c\n"),
            "Dockerfile:2: syntax error - can't find = in \"c\". Must be of the form: name=value"
        );
    }

    #[test]
    fn simple_instructions() {
        assert_eq!(
            one("EXPOSE 80/tcp 80/udp"),
            Command::Expose(s(&["80/tcp", "80/udp"]))
        );
        assert_eq!(one("VOLUME [\"/data\"]"), Command::Volume(s(&["/data"])));
        assert_eq!(
            one("VOLUME /var/log /var/db"),
            Command::Volume(s(&["/var/log", "/var/db"]))
        );
        assert_eq!(
            one("USER patrick:staff"),
            Command::User("patrick:staff".into())
        );
        assert_eq!(
            one("STOPSIGNAL SIGKILL"),
            Command::StopSignal("SIGKILL".into())
        );
        assert_eq!(
            one("SHELL [\"powershell\", \"-command\"]"),
            Command::Shell(s(&["powershell", "-command"]))
        );
        assert_eq!(
            one("MAINTAINER Jane <jane@example.com>"),
            Command::Maintainer("Jane <jane@example.com>".into())
        );
        assert_eq!(
            one("ARG user1=someuser buildno"),
            Command::Arg(vec![
                ArgDecl {
                    name: "user1".into(),
                    default: Some("someuser".into())
                },
                ArgDecl {
                    name: "buildno".into(),
                    default: None
                },
            ])
        );
        assert_eq!(
            error("FROM a\nSHELL /bin/bash -c\n"),
            "Dockerfile:2: SHELL requires the arguments to be in JSON form"
        );
        assert_eq!(
            error("FROM a\nEXPOSE\n"),
            "Dockerfile:2: EXPOSE requires at least one argument"
        );
        assert_eq!(
            error("FROM a\nSTOPSIGNAL a b\n"),
            "Dockerfile:2: STOPSIGNAL requires exactly one argument"
        );
        assert_eq!(
            error("FROM a\nWORKDIR --x=1 /a\n"),
            "Dockerfile:2: unknown flag: --x"
        );
        assert_eq!(
            error("FROM a\nVOLUME [\"\"]\n"),
            "Dockerfile:2: VOLUME specified can not be an empty string"
        );
    }

    #[test]
    fn onbuild() {
        assert_eq!(
            one("ONBUILD ADD . /app/src"),
            Command::Onbuild(OnBuild {
                trigger: "ADD . /app/src".into(),
                command: Box::new(Command::Add(Copy {
                    sources: vec![Source::Path(".".into())],
                    dest: "/app/src".into(),
                    ..Copy::default()
                })),
            })
        );
        assert_eq!(
            one("onbuild run --mount=type=cache,target=/c make"),
            Command::Onbuild(OnBuild {
                trigger: "run --mount=type=cache,target=/c make".into(),
                command: Box::new(match one("RUN --mount=type=cache,target=/c make") {
                    c @ Command::Run(_) => c,
                    _ => unreachable!(),
                }),
            })
        );
        let cmds = commands("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nCMD x\n");
        assert_eq!(cmds.len(), 3);
        let Command::Onbuild(ob) = &cmds[1] else {
            panic!("not an ONBUILD");
        };
        assert_eq!(ob.trigger, "RUN <<EOF\necho hi\nEOF");
        let Command::Run(run) = ob.command.as_ref() else {
            panic!("not a RUN trigger");
        };
        assert_eq!(run.heredocs[0].content, "echo hi\n");
        assert_eq!(
            error("FROM a\nONBUILD ONBUILD RUN x\n"),
            "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        assert_eq!(
            error("FROM a\nONBUILD from b\n"),
            "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            error("FROM a\nONBUILD MAINTAINER b\n"),
            "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            error("FROM a\nONBUILD FORM b\n"),
            "Dockerfile:2: unknown instruction: FORM (did you mean FROM?)"
        );
    }

    #[test]
    fn healthcheck() {
        assert_eq!(
            one("HEALTHCHECK NONE"),
            Command::Healthcheck(Healthcheck::None)
        );
        assert_eq!(
            one(
                "HEALTHCHECK --interval=5m --timeout=3s --start-period=1.5s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1"
            ),
            Command::Healthcheck(Healthcheck::Check {
                test: CommandLine::Shell("curl -f http://localhost/ || exit 1".into()),
                interval: Some(Duration::from_secs(300)),
                timeout: Some(Duration::from_secs(3)),
                start_period: Some(Duration::from_millis(1500)),
                start_interval: Some(Duration::from_millis(500)),
                retries: Some(3),
            })
        );
        assert_eq!(
            one("HEALTHCHECK cmd [\"/bin/check\", \"-q\"]"),
            Command::Healthcheck(Healthcheck::Check {
                test: CommandLine::Exec(s(&["/bin/check", "-q"])),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            })
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK NONE x\n"),
            "Dockerfile:2: HEALTHCHECK NONE takes no arguments"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK CMD\n"),
            "Dockerfile:2: Missing command after HEALTHCHECK CMD"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK TEST x\n"),
            "Dockerfile:2: Unknown type \"TEST\" in HEALTHCHECK (try CMD)"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --interval=10us CMD x\n"),
            "Dockerfile:2: interval \"interval\" cannot be less than 1ms"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --timeout=soon CMD x\n"),
            "Dockerfile:2: time: invalid duration \"soon\""
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --retries=0 CMD x\n"),
            "Dockerfile:2: --retries must be at least 1 (not 0)"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --interval=-5s CMD x\n"),
            "Dockerfile:2: interval \"interval\" cannot be less than 1ms"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --start-period=0s CMD x\n"),
            "Dockerfile:2: interval \"start-period\" cannot be less than 1ms"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        assert_eq!(go_duration("2.5ms"), Some(Duration::from_micros(2500)));
        assert_eq!(go_duration("10"), None);
        assert_eq!(go_duration(""), None);
        assert_eq!(go_duration("5x"), None);
    }
}
