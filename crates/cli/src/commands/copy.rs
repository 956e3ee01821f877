//! `container copy|cp SOURCE DEST`, with `docker cp`'s path rules.
//!
//! Out of a container: the daemon sends a tar whose entries start with the source's base
//! name. An existing destination directory receives it under that name; otherwise the
//! destination names the copy (its parent must exist). Into a container: the same rules,
//! decided from the daemon's stat of the destination. `-` streams a raw tar on stdin or
//! stdout. Bytes are streamed through a blocking thread running the `tar` crate; nothing is
//! held whole in memory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use api::v1::{self, copy_in_request::Part as InPart, copy_out_response::Part as OutPart};
use spec::CopyOperand;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::Context;
use crate::args::CopyArgs;
use crate::error::{CliError, CliResult};

const CHUNK: usize = 256 * 1024;
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;

/// `container copy`.
pub async fn copy_cmd(ctx: &Context, a: &CopyArgs) -> CliResult {
    match (
        CopyOperand::parse(&a.source),
        CopyOperand::parse(&a.destination),
    ) {
        (CopyOperand::Container { container, path }, CopyOperand::Host(dst)) => {
            copy_out(ctx, &container, &absolute(&path), &dst).await
        }
        (CopyOperand::Host(src), CopyOperand::Container { container, path }) => {
            copy_in(ctx, &src, &container, &absolute(&path)).await
        }
        (CopyOperand::Container { .. }, CopyOperand::Container { .. }) => Err(CliError::Usage(
            "copying between two containers is not supported: copy through the host".into(),
        )),
        (CopyOperand::Host(_), CopyOperand::Host(_)) => Err(CliError::Usage(
            "one of SOURCE and DEST must be CONTAINER:PATH".into(),
        )),
    }
}

/// Container paths without a leading `/` are relative to the root.
fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

fn base_name(path: &str) -> String {
    Path::new(path.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_owned())
}

/// Where an unpacked archive lands on the host: the directory to unpack in, and the name
/// the archive's first component gets there.
fn host_destination(
    dst: &Path,
    source_name: &str,
    source_is_dir: bool,
) -> Result<(PathBuf, String), CliError> {
    match std::fs::metadata(dst) {
        Ok(meta) if meta.is_dir() => Ok((dst.to_path_buf(), source_name.to_owned())),
        Ok(_) if source_is_dir => Err(CliError::Usage(format!(
            "cannot copy a directory onto the file {}",
            dst.display()
        ))),
        Ok(_) | Err(_) => {
            let parent = match dst.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                return Err(CliError::Usage(format!(
                    "destination directory {} does not exist",
                    parent.display()
                )));
            }
            let name = dst
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| CliError::Usage(format!("invalid destination {}", dst.display())))?;
            Ok((parent, name))
        }
    }
}

/// Reads the chunks an async task sends, as a blocking `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Sends what a blocking writer writes as chunks to an async task.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.tx.blocking_send(chunk).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the daemon stopped reading")
            })?;
        }
        Ok(())
    }
}

async fn copy_out(ctx: &Context, container: &str, path: &str, dst: &str) -> CliResult {
    let client = ctx.client().await?;
    let mut stream = client
        .containers()
        .copy_out(v1::CopyOutRequest {
            id: container.to_owned(),
            path: path.to_owned(),
        })
        .await?
        .into_inner();
    let stat = match stream.message().await? {
        Some(v1::CopyOutResponse {
            part: Some(OutPart::Stat(stat)),
        }) => stat,
        _ => {
            return Err(CliError::Daemon(
                "the daemon's copy stream did not start with a stat".into(),
            ));
        }
    };
    if dst == "-" {
        crate::commands::stream::to_stdout(stream).await?;
        return Ok(0);
    }
    let is_dir = stat.mode & S_IFMT == S_IFDIR;
    let source_name = base_name(path);
    let (dir, name) = if source_name == "/" {
        // The container's root: its content goes into DEST, created if missing.
        let dst = Path::new(dst);
        if !dst.is_dir() {
            std::fs::create_dir(dst)
                .map_err(|e| CliError::io(format!("creating {}", dst.display()), e))?;
        }
        (dst.to_path_buf(), None)
    } else {
        let (dir, name) = host_destination(Path::new(dst), &source_name, is_dir)?;
        (dir, Some(name))
    };
    let (tx, rx) = mpsc::channel(8);
    let unpack = tokio::task::spawn_blocking(move || {
        super::unpack::unpack_renamed(
            ChannelReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            },
            &dir,
            name.as_deref(),
        )
    });
    let mut feed_error = None;
    loop {
        match stream.message().await {
            Ok(Some(v1::CopyOutResponse {
                part: Some(OutPart::Data(data)),
            })) => {
                if tx.send(data).await.is_err() {
                    break; // the unpacker failed; its error is reported below
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(status) => {
                feed_error = Some(CliError::from(status));
                break;
            }
        }
    }
    drop(tx);
    let unpacked = unpack
        .await
        .map_err(|e| CliError::Daemon(format!("unpacking failed: {e}")))?;
    if let Some(e) = feed_error {
        return Err(e);
    }
    let unpacked = unpacked.map_err(|e| CliError::Daemon(e.to_string()))?;
    for skipped in unpacked.skipped {
        eprintln!("warning: skipped the device node or fifo {skipped}");
    }
    Ok(0)
}

async fn copy_in(ctx: &Context, src: &str, container: &str, path: &str) -> CliResult {
    let client = ctx.client().await?;
    let (tx, rx) = mpsc::channel::<v1::CopyInRequest>(8);
    let (dir, producer) = if src == "-" {
        // A raw tar on stdin goes into the destination directory as it is.
        let producer = tokio::spawn({
            let tx = tx.clone();
            async move {
                let mut stdin = tokio::io::stdin();
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = stdin
                        .read(&mut buf)
                        .await
                        .map_err(|e| CliError::io("reading stdin", e))?;
                    if n == 0 {
                        return Ok::<(), CliError>(());
                    }
                    let part = Some(InPart::Data(buf[..n].to_vec()));
                    if tx.send(v1::CopyInRequest { part }).await.is_err() {
                        return Ok(());
                    }
                }
            }
        });
        (path.to_owned(), producer)
    } else {
        let source = PathBuf::from(src);
        let meta = std::fs::symlink_metadata(&source)
            .map_err(|e| CliError::io(format!("reading {}", source.display()), e))?;
        let stat = client
            .containers()
            .stat_path(v1::StatPathRequest {
                id: container.to_owned(),
                path: path.to_owned(),
            })
            .await;
        let (dir, name) = match stat {
            Ok(r) => {
                let is_dir = r
                    .into_inner()
                    .stat
                    .is_some_and(|s| s.mode & S_IFMT == S_IFDIR);
                if is_dir {
                    (path.to_owned(), base_name(src))
                } else if meta.is_dir() {
                    return Err(CliError::Usage(format!(
                        "cannot copy a directory onto the file {container}:{path}"
                    )));
                } else {
                    (parent_of(path), base_name(path))
                }
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                (parent_of(path), base_name(path))
            }
            Err(status) => return Err(status.into()),
        };
        let (chunks_tx, mut chunks_rx) = mpsc::channel::<Vec<u8>>(8);
        let builder = tokio::task::spawn_blocking(move || -> Result<(), CliError> {
            let io = |e: std::io::Error| CliError::io(format!("archiving {}", source.display()), e);
            let mut tar = tar::Builder::new(ChannelWriter {
                tx: chunks_tx,
                buf: Vec::new(),
            });
            tar.follow_symlinks(false);
            if meta.is_dir() {
                tar.append_dir_all(&name, &source).map_err(io)?;
            } else {
                tar.append_path_with_name(&source, &name).map_err(io)?;
            }
            let mut writer = tar.into_inner().map_err(io)?;
            writer.flush().map_err(io)
        });
        let producer = tokio::spawn({
            let tx = tx.clone();
            async move {
                while let Some(chunk) = chunks_rx.recv().await {
                    if tx
                        .send(v1::CopyInRequest {
                            part: Some(InPart::Data(chunk)),
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                builder
                    .await
                    .map_err(|e| CliError::Daemon(format!("archiving failed: {e}")))?
            }
        });
        (dir, producer)
    };
    let header = v1::CopyInRequest {
        part: Some(InPart::Header(v1::CopyInHeader {
            id: container.to_owned(),
            path: dir,
        })),
    };
    // The header goes first: the channel is empty until the producer's first chunk, and the
    // request stream is read in order.
    let (first_tx, first_rx) = mpsc::channel(1);
    first_tx
        .send(header)
        .await
        .map_err(|_| CliError::Daemon("copy stream closed".into()))?;
    drop(first_tx);
    drop(tx);
    let request =
        tokio_stream::StreamExt::chain(ReceiverStream::new(first_rx), ReceiverStream::new(rx));
    let sent = client.containers().copy_in(request).await;
    let produced = producer
        .await
        .map_err(|e| CliError::Daemon(format!("reading the source failed: {e}")))?;
    sent?;
    produced?;
    Ok(0)
}

fn parent_of(path: &str) -> String {
    match Path::new(path.trim_end_matches('/')).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_string_lossy().into_owned(),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_follow_docker_cp() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("out");
        std::fs::create_dir(&existing).unwrap();
        assert_eq!(
            host_destination(&existing, "hosts", false).unwrap(),
            (existing.clone(), "hosts".into())
        );
        let new = dir.path().join("renamed");
        assert_eq!(
            host_destination(&new, "hosts", false).unwrap(),
            (dir.path().to_path_buf(), "renamed".into())
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(
            host_destination(&file, "etc", true)
                .unwrap_err()
                .to_string(),
            format!("cannot copy a directory onto the file {}", file.display())
        );
        let orphan = dir.path().join("missing/x");
        assert!(
            host_destination(&orphan, "hosts", false)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        assert_eq!(parent_of("/etc/hosts"), "/etc");
        assert_eq!(parent_of("/x"), "/");
        assert_eq!(base_name("/etc/"), "etc");
    }
}
