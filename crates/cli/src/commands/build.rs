//! `container build` and `container builder`: the context is walked here, filtered through
//! `.dockerignore` (crates/dockerfile's rules), and streamed to the daemon as a tar; the
//! daemon builds and streams progress, drawn here as BuildKit's plain lines
//! (`#3 [build 2/4] COPY a /a`, `#3 CACHED` or `#3 DONE 0.1s`) on stderr.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use api::v1;
use dockerfile::dockerignore::{Decision, IgnoreRules};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::Context;
use crate::args::BuildArgs;
use crate::error::{CliError, CliResult};

/// What a failed build exits with, as `docker build` does.
const EXIT_BUILD_FAILED: i32 = 1;

/// Context bytes per message.
const CHUNK: usize = 256 * 1024;

/// A writer whose bytes go to the daemon as context messages.
struct ContextSink {
    tx: mpsc::Sender<v1::BuildRequest>,
    buf: Vec<u8>,
}

impl ContextSink {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(v1::BuildRequest {
                part: Some(v1::build_request::Part::Context(data)),
            })
            .map_err(|_| std::io::Error::other("the daemon closed the build"))
    }
}

impl Write for ContextSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The paths of the context that reach the build, relative to it, in the order sent
/// (directories before their contents, names sorted). `.dockerignore` is honoured;
/// directories excluded but holding exceptions are walked, not sent.
pub fn context_entries(root: &Path, rules: &IgnoreRules) -> std::io::Result<Vec<(String, bool)>> {
    fn walk(
        root: &Path,
        rel: &str,
        rules: &IgnoreRules,
        out: &mut Vec<(String, bool)>,
    ) -> std::io::Result<()> {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<(String, bool)> = std::fs::read_dir(&dir)?
            .map(|e| {
                let e = e?;
                let is_dir = e.file_type()?.is_dir();
                Ok((e.file_name().to_string_lossy().into_owned(), is_dir))
            })
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for (name, is_dir) in names {
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            match rules.decide(&path, is_dir) {
                Decision::Exclude => {}
                Decision::Include => {
                    out.push((path.clone(), is_dir));
                    if is_dir {
                        walk(root, &path, rules, out)?;
                    }
                }
                Decision::Descend => walk(root, &path, rules, out)?,
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, "", rules, &mut out)?;
    Ok(out)
}

/// Writes the context tar.
fn write_context(root: &Path, entries: &[(String, bool)], sink: impl Write) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(sink);
    tar.follow_symlinks(false);
    for (path, is_dir) in entries {
        let full = root.join(path);
        if *is_dir {
            tar.append_dir(path, &full)?;
        } else {
            tar.append_path_with_name(&full, path)?;
        }
    }
    tar.into_inner()?.flush()
}

fn key_value(text: &str, what: &str) -> Result<(String, String), CliError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(CliError::Usage(format!(
            "invalid {what} {text:?}: expected KEY=VALUE"
        ))),
    }
}

/// Reads the Dockerfile the flags name: its text and the name errors give it.
fn read_dockerfile(a: &BuildArgs) -> Result<(String, String), CliError> {
    let path = match a.file.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::io("reading the Dockerfile from stdin", e))?;
            return Ok((text, "Dockerfile".into()));
        }
        Some(p) => PathBuf::from(p),
        None => {
            let d = a.context.join("Dockerfile");
            let c = a.context.join("Containerfile");
            if d.is_file() || !c.is_file() { d } else { c }
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
    let name = path
        .file_name()
        .map_or_else(|| "Dockerfile".into(), |n| n.to_string_lossy().into_owned());
    Ok((text, name))
}

/// `container build`.
pub async fn build(ctx: &Context, a: &BuildArgs) -> CliResult {
    if !a.context.is_dir() {
        return Err(CliError::Usage(format!(
            "the build context {} is not a directory",
            a.context.display()
        )));
    }
    let output = match &a.output {
        None => None,
        Some(o) => Some(parse_output(o)?),
    };
    let (text, name) = read_dockerfile(a)?;
    let mut build_args = HashMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            // KEY alone passes the host's value, and nothing when it has none.
            None => match std::env::var(b) {
                Ok(v) => build_args.insert(b.clone(), v),
                Err(_) => None,
            },
        };
    }
    let labels = a
        .labels
        .iter()
        .map(|l| key_value(l, "label"))
        .collect::<Result<HashMap<_, _>, _>>()?;
    let ignore = match std::fs::read_to_string(a.context.join(".dockerignore")) {
        Ok(t) => IgnoreRules::parse(&t).map_err(CliError::usage)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreRules::default(),
        Err(e) => return Err(CliError::io("reading .dockerignore", e)),
    };
    let root = a.context.clone();
    let entries = tokio::task::spawn_blocking(move || context_entries(&root, &ignore))
        .await
        .map_err(|e| CliError::Daemon(format!("walking the context failed: {e}")))?
        .map_err(|e| CliError::io("reading the build context", e))?;
    let (secrets, ssh) = crate::commands::builder::secrets_and_agents(&a.secrets, &a.ssh)?;
    let client = ctx.client().await?;
    let (tx, rx) = mpsc::channel(8);
    let header = v1::BuildRequest {
        part: Some(v1::build_request::Part::Header(v1::BuildHeader {
            dockerfile: text,
            dockerfile_name: name,
            tags: a.tags.clone(),
            build_args,
            target: a.target.clone().unwrap_or_default(),
            labels,
            no_cache: a.no_cache,
            pull: a.pull,
            platform: a.platform.clone().unwrap_or_default(),
            secrets,
            ssh,
        })),
    };
    tx.send(header)
        .await
        .map_err(|_| CliError::Daemon("the build stream closed".into()))?;
    let root = a.context.clone();
    let sender = tokio::task::spawn_blocking(move || {
        let sink = ContextSink {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        write_context(&root, &entries, sink)
    });
    let response = client.builds().build(ReceiverStream::new(rx)).await;
    let mut stream = match response {
        Ok(r) => r.into_inner(),
        Err(status) => return failed(api::ApiError::from(status)),
    };
    let mut result = None;
    let mut steps: BTreeMap<u32, v1::BuildStep> = BTreeMap::new();
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => return failed(api::ApiError::from(status)),
        };
        use v1::build_response::Event as E;
        match msg.event {
            Some(E::Result(r)) => result = Some(r),
            Some(E::Warning(w)) => eprintln!("WARNING: {w}"),
            Some(E::Step(s)) => {
                if !a.quiet {
                    eprintln!("{}", step_line(&s));
                }
                steps.insert(s.number, s);
            }
            Some(E::Done(d)) if !a.quiet => {
                if d.cached {
                    eprintln!("#{} CACHED", d.number);
                } else {
                    eprintln!("#{} DONE {:.1}s", d.number, d.duration_ms as f64 / 1000.0);
                }
            }
            Some(E::Log(l)) if !a.quiet => {
                for line in l.text.lines() {
                    eprintln!("#{} {line}", l.number);
                }
            }
            _ => {}
        }
    }
    // The context went out whole, or the daemon stopped reading it (it failed first).
    if let Ok(Err(e)) = sender.await
        && result.is_some()
    {
        return Err(CliError::io("sending the build context", e));
    }
    let Some(result) = result else {
        return failed(api::ApiError::internal("the build ended without a result"));
    };
    if a.quiet {
        outln!("{}", result.digest);
    } else {
        let n = steps.keys().last().copied().unwrap_or(0) + 1;
        eprintln!("#{n} writing image {} done", result.digest);
        for r in &result.references {
            eprintln!("#{n} naming to {r} done");
        }
    }
    if let Some((kind, dest)) = output {
        export(&client, &result, &kind, &dest).await?;
    }
    Ok(0)
}

fn failed(e: api::ApiError) -> CliResult {
    eprintln!("container: {e}");
    Ok(EXIT_BUILD_FAILED)
}

fn step_line(s: &v1::BuildStep) -> String {
    let stage = if s.stage.parse::<usize>().is_ok() {
        format!("stage-{}", s.stage)
    } else {
        s.stage.clone()
    };
    format!(
        "#{} [{stage} {}/{}] {}",
        s.number, s.index, s.count, s.instruction
    )
}

/// `-o type=oci,dest=PATH`.
fn parse_output(text: &str) -> Result<(String, PathBuf), CliError> {
    let mut kind = None;
    let mut dest = None;
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => {
                return Err(CliError::Usage(format!(
                    "invalid --output {text:?}: expected type=oci,dest=PATH"
                )));
            }
        }
    }
    match (kind.as_deref(), dest) {
        (Some("oci"), Some(d)) => Ok(("oci".into(), d)),
        (Some(k @ ("tar" | "local")), _) => Err(CliError::Usage(format!(
            "--output type={k} is not supported yet: use type=oci"
        ))),
        _ => Err(CliError::Usage(format!(
            "invalid --output {text:?}: expected type=oci,dest=PATH"
        ))),
    }
}

/// Writes the built image as an OCI layout tar.
async fn export(
    client: &api::Client,
    result: &v1::BuildResult,
    _kind: &str,
    dest: &Path,
) -> Result<(), CliError> {
    let reference = result
        .references
        .first()
        .cloned()
        .unwrap_or_else(|| result.digest.clone());
    let stream = client
        .images()
        .save(v1::SaveImagesRequest {
            references: vec![reference],
            platform: String::new(),
        })
        .await?
        .into_inner();
    crate::commands::stream::write_stream(Some(dest), stream).await
}

/// `container builder prune`.
pub async fn prune(ctx: &Context) -> CliResult {
    let client = ctx.client().await?;
    let r = client
        .builds()
        .prune_cache(v1::PruneBuildCacheRequest {})
        .await?
        .into_inner();
    outln!(
        "Deleted build cache entries: {}\nTotal reclaimed space: {} bytes",
        r.deleted.len(),
        r.reclaimed_bytes
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_exceptions_decide_what_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "a.txt",
            "b.log",
            "logs/keep.log",
            "logs/drop.log",
            "src/main.rs",
            "src/x.tmp",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let rules = IgnoreRules::parse("*.log\nlogs\n!logs/keep.log\n**/*.tmp\n").unwrap();
        let sent: Vec<String> = context_entries(root, &rules)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(sent, ["a.txt", "logs/keep.log", "src", "src/main.rs"]);
    }

    #[test]
    fn output_flag() {
        assert_eq!(
            parse_output("type=oci,dest=out.tar").unwrap(),
            ("oci".to_string(), PathBuf::from("out.tar"))
        );
        assert!(parse_output("type=local,dest=x").is_err());
        assert!(parse_output("dest").is_err());
    }
}
