//! Typed instructions: what each keyword's arguments and flags mean, checked as Docker
//! checks them. Words are kept as written (quotes and `$` references included); `plan`
//! expands them in the stage's environment.

use std::time::Duration;

use crate::mount::{Mount, parse_mount};
use crate::parse::{Heredoc, Node, heredoc_word, node_from_line, split_words};

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

    fn text(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
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

/// JSON array of strings, or None when the text is not valid JSON (shell form then).
fn json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(
                "when using JSON array syntax, arrays must be comprised of strings only"
                    .to_string(),
            ),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
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
    if text.starts_with('-') {
        return Err(format!("interval {name:?} cannot be negative"));
    }
    let d = go_duration(&text).ok_or_else(|| format!("time: invalid duration {text:?}"))?;
    if d.is_zero() {
        return Ok(None);
    }
    if d < Duration::from_millis(1) {
        return Err(format!("interval {name:?} cannot be less than 1ms"));
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
            let mounts = flags
                .list("mount")
                .iter()
                .map(|m| parse_mount(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
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
            Command::Onbuild(OnBuild {
                trigger: rest.to_string(),
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
                        Some(r) => match r.parse::<i64>() {
                            Ok(n) if n < 0 => return Err("--retries cannot be negative".into()),
                            Ok(0) => None,
                            Ok(n) => Some(
                                u32::try_from(n)
                                    .map_err(|_| format!("invalid value {r:?} for --retries"))?,
                            ),
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
