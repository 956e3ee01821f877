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

/// The environment variable (and build arg) that pins an image's timestamps.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

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

/// The key the daemon keeps this context directory under between builds: a hash of its
/// absolute path (empty, so the daemon starts afresh, when it has none).
fn context_key(dir: &Path) -> String {
    use sha2::Digest as _;
    match std::fs::canonicalize(dir) {
        Ok(p) => {
            let mut h = sha2::Sha256::new();
            h.update(b"container-build-context\0");
            h.update(p.as_os_str().as_encoded_bytes());
            hex::encode(h.finalize())
        }
        Err(_) => String::new(),
    }
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
    // As `docker buildx` does: the CLI's own SOURCE_DATE_EPOCH is the build arg unless one
    // was given.
    if let Ok(epoch) = std::env::var(SOURCE_DATE_EPOCH)
        && !build_args.contains_key(SOURCE_DATE_EPOCH)
    {
        build_args.insert(SOURCE_DATE_EPOCH.to_string(), epoch);
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
            context_dockerfile: String::new(),
            context_key: context_key(&a.context),
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
        // With `-o type=tar,dest=-` stdout carries the tar: the ID goes to stderr.
        if output == Some(Output::Tar(None)) {
            eprintln!("{}", result.digest);
        } else {
            outln!("{}", result.digest);
        }
    } else {
        let n = steps.keys().last().copied().unwrap_or(0) + 1;
        eprintln!("#{n} writing image {} done", result.digest);
        for r in &result.references {
            eprintln!("#{n} naming to {r} done");
        }
    }
    if let Some(output) = &output {
        export(
            &client,
            &result,
            output,
            a.platform.as_deref().unwrap_or_default(),
        )
        .await?;
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

/// What `-o` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    /// The image as an OCI layout tar at this path.
    Oci(PathBuf),
    /// The final stage's file system as a tar: at this path, or stdout for `dest=-`.
    Tar(Option<PathBuf>),
    /// The final stage's file system unpacked into this directory.
    Local(PathBuf),
}

/// `-o type=oci|tar|local,dest=PATH` (`dest=-` writes a tar to stdout).
fn parse_output(text: &str) -> Result<Output, CliError> {
    let usage = || {
        CliError::Usage(format!(
            "invalid --output {text:?}: expected type=oci|tar|local,dest=PATH"
        ))
    };
    let mut kind = None;
    let mut dest = None;
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) if !v.is_empty() => dest = Some(v.to_string()),
            _ => return Err(usage()),
        }
    }
    let dest = dest.ok_or_else(usage)?;
    match kind.as_deref() {
        Some("oci") if dest != "-" => Ok(Output::Oci(PathBuf::from(dest))),
        Some("tar") if dest == "-" => Ok(Output::Tar(None)),
        Some("tar") => Ok(Output::Tar(Some(PathBuf::from(dest)))),
        Some("local") if dest != "-" => Ok(Output::Local(PathBuf::from(dest))),
        _ => Err(usage()),
    }
}

/// Writes what `-o` asked for.
async fn export(
    client: &api::Client,
    result: &v1::BuildResult,
    output: &Output,
    platform: &str,
) -> Result<(), CliError> {
    let image = result
        .references
        .first()
        .cloned()
        .unwrap_or_else(|| result.digest.clone());
    let filesystem = || async {
        Ok::<_, CliError>(
            client
                .builds()
                .export_filesystem(v1::ExportFilesystemRequest {
                    image: result.digest.clone(),
                    platform: platform.to_string(),
                })
                .await?
                .into_inner(),
        )
    };
    match output {
        Output::Oci(dest) => {
            let stream = client
                .images()
                .save(v1::SaveImagesRequest {
                    references: vec![image],
                    platform: String::new(),
                })
                .await?
                .into_inner();
            crate::commands::stream::write_stream(Some(dest), stream).await
        }
        Output::Tar(dest) => {
            crate::commands::stream::write_stream(dest.as_deref(), filesystem().await?).await
        }
        Output::Local(dest) => export_local(filesystem().await?, dest).await,
    }
}

/// A blocking reader over chunks a task sends.
struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Unpacks the file system tar into `dest`, which must be missing or empty: it is filled
/// in a sibling directory first and renamed into place, so a failure leaves nothing.
async fn export_local(
    mut stream: tonic::Streaming<wire::v1::DataChunk>,
    dest: &Path,
) -> Result<(), CliError> {
    let io = |e| CliError::io(format!("writing {}", dest.display()), e);
    match std::fs::read_dir(dest) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(CliError::Usage(format!(
                    "--output type=local: {} is not empty",
                    dest.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let temp = parent.join(format!(".{name}.{}.partial", std::process::id()));
    std::fs::create_dir_all(&temp).map_err(io)?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let target = temp.clone();
    let unpack = tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        crate::commands::unpack::unpack_tree(reader, &target)
    });
    let mut failure = None;
    loop {
        match stream.message().await {
            Ok(Some(c)) => {
                if tx.send(c.data).await.is_err() {
                    break; // the unpack failed: its error says why
                }
            }
            Ok(None) => break,
            Err(s) => {
                failure = Some(CliError::from(s));
                break;
            }
        }
    }
    drop(tx);
    let unpacked = unpack
        .await
        .map_err(|e| CliError::Daemon(format!("unpacking failed: {e}")));
    let result = match (failure, unpacked) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(e),
        (None, Ok(Err(e))) => Err(CliError::Daemon(e.to_string())),
        (None, Ok(Ok(_))) => {
            let _ = std::fs::remove_dir(dest);
            std::fs::rename(&temp, dest).map_err(io)
        }
    };
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    result
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
            Output::Oci(PathBuf::from("out.tar"))
        );
        assert_eq!(
            parse_output("type=tar,dest=fs.tar").unwrap(),
            Output::Tar(Some(PathBuf::from("fs.tar")))
        );
        assert_eq!(parse_output("type=tar,dest=-").unwrap(), Output::Tar(None));
        assert_eq!(
            parse_output("dest=out,type=local").unwrap(),
            Output::Local(PathBuf::from("out"))
        );
        for bad in [
            "type=local,dest=-",
            "type=oci,dest=-",
            "type=docker,dest=x",
            "type=tar",
            "type=tar,dest=",
            "dest",
        ] {
            let e = parse_output(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected type=oci|tar|local,dest=PATH"),
                "{bad}: {e}"
            );
        }
    }
}
