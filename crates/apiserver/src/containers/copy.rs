//! Copying files in and out of a container (`cp`, `stat`), through its running VM or, for a
//! stopped container, a maintenance runtime booted for the copy (writable for a copy in).

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::ApiError;
use api::v1;
use runtime_api::client::RuntimeClient;
use tokio::sync::mpsc;
use tonic::codegen::BoxStream;
use tonic::{Request, Streaming};

use super::{BOOT_TIMEOUT, CONNECT_TIMEOUT, Res, boxed, ok, runtime_error};
use crate::daemon::Daemon;
use crate::errors::one_line;
use crate::record::Phase;

pub(super) async fn copy_in(
    daemon: &Arc<Daemon>,
    req: Request<Streaming<v1::CopyInRequest>>,
) -> Res<v1::CopyInResponse> {
    let mut input = req.into_inner();
    let Some(v1::copy_in_request::Part::Header(h)) = input.message().await?.and_then(|m| m.part)
    else {
        return Err(
            ApiError::invalid_argument("copy: the first message must be the header").into(),
        );
    };
    if !h.path.starts_with('/') {
        return Err(ApiError::invalid_argument(format!(
            "copy: {:?} is not an absolute path",
            h.path
        ))
        .into());
    }
    let id = daemon.lookup(&h.id)?;
    // Into a stopped container: through a writable maintenance VM, into its writable layer.
    let target = daemon.copy_target(&id).await?;
    let (tx, rx) = mpsc::channel(8);
    let feeder = tokio::spawn(async move {
        while let Ok(Some(m)) = input.message().await {
            if let Some(v1::copy_in_request::Part::Data(d)) = m.part
                && tx.send(d).await.is_err()
            {
                return;
            }
        }
    });
    let result = target.client.copy_in(&h.path, rx).await;
    feeder.abort();
    result.map_err(runtime_error)?;
    ok(v1::CopyInResponse {})
}

pub(super) async fn copy_out(
    daemon: &Arc<Daemon>,
    req: Request<v1::CopyOutRequest>,
) -> Res<BoxStream<v1::CopyOutResponse>> {
    let r = req.into_inner();
    let id = daemon.lookup(&r.id)?;
    let source = daemon.copy_source(&id).await?;
    let (stat, mut head, mut stream) = stat_and_stream(&source.client, &r.path).await?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let _source = source;
        use v1::copy_out_response::Part;
        if tx
            .send(Ok(v1::CopyOutResponse {
                part: Some(Part::Stat(stat)),
            }))
            .await
            .is_err()
        {
            return;
        }
        if !head.is_empty() {
            let data = std::mem::take(&mut head);
            if tx
                .send(Ok(v1::CopyOutResponse {
                    part: Some(Part::Data(data)),
                }))
                .await
                .is_err()
            {
                return;
            }
        }
        loop {
            match stream.message().await {
                Ok(Some(c)) => {
                    if tx
                        .send(Ok(v1::CopyOutResponse {
                            part: Some(Part::Data(c.data)),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => return,
                Err(s) => {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            }
        }
    });
    ok(boxed(rx))
}

pub(super) async fn stat_path(
    daemon: &Arc<Daemon>,
    req: Request<v1::StatPathRequest>,
) -> Res<v1::StatPathResponse> {
    let r = req.into_inner();
    let id = daemon.lookup(&r.id)?;
    let source = daemon.copy_source(&id).await?;
    let (stat, _, _) = stat_and_stream(&source.client, &r.path).await?;
    ok(v1::StatPathResponse { stat: Some(stat) })
}

impl Daemon {
    /// Where copy-out, stat, export, diff and commit read a container's files: its runtime
    /// while it runs, else a maintenance runtime (`container-runtime --maintenance`) booted
    /// for this read with the container's root mounted read-only.
    pub(crate) async fn copy_source(self: &Arc<Self>, id: &str) -> Result<CopySource, ApiError> {
        self.files_runtime(id, Access::Read).await
    }

    /// Where a copy into a container goes: its runtime while it runs, else a maintenance
    /// runtime booted with the container's root writable, so the copy lands in its writable
    /// layer.
    pub(crate) async fn copy_target(self: &Arc<Self>, id: &str) -> Result<CopySource, ApiError> {
        self.files_runtime(id, Access::Write).await
    }

    /// See [`Daemon::copy_source`] and [`Daemon::copy_target`]. The container's op lock is
    /// held until the maintenance VM is down, so a start cannot share its writable layer.
    async fn files_runtime(
        self: &Arc<Self>,
        id: &str,
        access: Access,
    ) -> Result<CopySource, ApiError> {
        if self.record(id)?.phase == Phase::Running {
            return Ok(CopySource {
                client: self.connect(id).await?,
                _maintenance: None,
            });
        }
        let guard = self.op_lock(id)?.lock_owned().await;
        let record = self.record(id)?;
        if record.phase == Phase::Running {
            drop(guard);
            return Ok(CopySource {
                client: self.connect(id).await?,
                _maintenance: None,
            });
        }
        let rc = self
            .runtime_config(id, crate::runspec::NetworkPlan::User)
            .await?;
        let bundle = self.bundle(id);
        // The last run's runtime may still be powering its VM off, holding the layer.
        self.reap_runtime(id, Duration::from_secs(30)).await;
        let _ = std::fs::remove_file(bundle.maintenance_socket());
        rc.save(&bundle.maintenance_config())
            .map_err(|e| ApiError::internal(format!("writing the runtime config: {e}")))?;
        let mut child = tokio::process::Command::new(&self.runtime_binary)
            .arg("--bundle")
            .arg(bundle.dir())
            .arg("--maintenance")
            .args((access == Access::Write).then_some("--writable"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ApiError::failed_precondition(format!(
                    "cannot run the container runtime {}: {e}",
                    self.runtime_binary.display()
                ))
            })?;
        tracing::info!(%id, pid = child.id(), "maintenance runtime spawned");
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let client = loop {
            if bundle.maintenance_socket().exists()
                && let Ok(client) =
                    RuntimeClient::connect(&bundle.maintenance_socket(), CONNECT_TIMEOUT).await
            {
                break client;
            }
            let failed = match child.try_wait() {
                Ok(Some(_)) => Some("the maintenance runtime exited".to_string()),
                Ok(None) if Instant::now() >= deadline => Some(format!(
                    "the maintenance vm did not boot within {}s",
                    BOOT_TIMEOUT.as_secs()
                )),
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failed {
                let log = std::fs::read_to_string(bundle.runtime_log()).unwrap_or_default();
                let reason = log
                    .lines()
                    .rev()
                    .find(|l| l.contains("ERROR"))
                    .map(str::to_owned)
                    .unwrap_or(why);
                let _ = child.start_kill();
                return Err(ApiError::unavailable(format!(
                    "cannot {} the files of the stopped container {}: {}",
                    access.verb(),
                    record.name,
                    one_line(&reason)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(CopySource {
            client,
            _maintenance: Some(Maintenance {
                child: Some(child),
                guard: Some(guard),
            }),
        })
    }
}

/// What a maintenance runtime is booted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Reading: copy out, stat, export, diff, commit.
    Read,
    /// Copying in.
    Write,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// A runtime to copy a container's files from or to; see [`Daemon::copy_source`] and
/// [`Daemon::copy_target`].
pub(crate) struct CopySource {
    pub client: RuntimeClient,
    _maintenance: Option<Maintenance>,
}

/// A maintenance runtime and the op lock it holds; dropping it closes the runtime's stdin
/// (its signal to power the VM off), and the lock is released once the runtime has exited.
struct Maintenance {
    child: Option<tokio::process::Child>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        let (Some(mut child), guard) = (self.child.take(), self.guard.take()) else {
            return;
        };
        drop(child.stdin.take());
        let finish = async move {
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                tracing::warn!("the maintenance runtime did not exit in 30s; killing it");
                let _ = child.kill().await;
            }
            drop(guard);
        };
        // Without a runtime (the daemon is exiting) kill_on_drop ends the child.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(finish);
        }
    }
}

/// Copies `path` out of the container far enough to read its first tar header; returns
/// the stat, the bytes read so far and the rest of the stream.
async fn stat_and_stream(
    client: &RuntimeClient,
    path: &str,
) -> Result<(v1::PathStat, Vec<u8>, Streaming<wire::v1::DataChunk>), ApiError> {
    if !path.starts_with('/') {
        return Err(ApiError::invalid_argument(format!(
            "{path:?} is not an absolute path"
        )));
    }
    let mut stream = client.copy_out(path).await.map_err(runtime_error)?;
    let mut head = Vec::new();
    // GNU long names put a pseudo-entry first; read until a real header is complete.
    loop {
        if let Some(stat) = parse_first_entry(&head, path) {
            return Ok((stat, head, stream));
        }
        // Checked after parsing: one chunk from the guest is 256 KiB, header and all.
        if head.len() > 1 << 20 {
            return Err(ApiError::internal(format!(
                "copy of {path}: no tar header found"
            )));
        }
        match stream.message().await {
            Ok(Some(c)) => head.extend(c.data),
            Ok(None) => {
                return Err(ApiError::internal(format!(
                    "copy of {path}: the archive is empty"
                )));
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Err(ApiError::not_found(format!(
                    "{path}: no such file or directory"
                )));
            }
            Err(s) => return Err(ApiError::from(s)),
        }
    }
}

/// The stat of the first entry of a tar archive, once enough bytes are there.
fn parse_first_entry(data: &[u8], path: &str) -> Option<v1::PathStat> {
    // Headers are read block by block: the tar crate's reader wants the whole first entry
    // (2 MB for busybox) before it yields it.
    let mut off = 0;
    let mut long_link: Option<Vec<u8>> = None;
    let h = loop {
        let block = data.get(off..off + 512)?;
        if block.iter().all(|b| *b == 0) {
            return None; // the end of an archive holds no entry
        }
        let h = tar::Header::from_byte_slice(block);
        let size = h.entry_size().ok()? as usize;
        let padded = size.div_ceil(512) * 512;
        match h.entry_type() {
            tar::EntryType::GNULongName
            | tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader => {}
            tar::EntryType::GNULongLink => {
                let body = data.get(off + 512..off + 512 + size)?;
                long_link = Some(body.split(|b| *b == 0).next().unwrap_or_default().to_vec());
            }
            _ => break h,
        }
        off += 512 + padded;
    };
    let link_target = long_link
        .or_else(|| h.link_name_bytes().map(|l| l.into_owned()))
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    let kind = match h.entry_type() {
        tar::EntryType::Directory => libc::S_IFDIR,
        tar::EntryType::Symlink => libc::S_IFLNK,
        tar::EntryType::Char => libc::S_IFCHR,
        tar::EntryType::Block => libc::S_IFBLK,
        tar::EntryType::Fifo => libc::S_IFIFO,
        _ => libc::S_IFREG,
    };
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("/")
        .to_owned();
    Some(v1::PathStat {
        name,
        size: h.size().unwrap_or(0),
        mode: h.mode().unwrap_or(0) | kind,
        mtime_ms: h.mtime().unwrap_or(0) as i64 * 1000,
        link_target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_tar_entry_gives_the_stat() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_mtime(5);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "hosts", &b"abc"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(parse_first_entry(&data[..100], "/etc/hosts").is_none());
        let s = parse_first_entry(&data, "/etc/hosts").unwrap();
        assert_eq!(s.name, "hosts");
        assert_eq!(s.size, 3);
        assert_eq!(s.mode, 0o644 | libc::S_IFREG);
        assert_eq!(s.mtime_ms, 5000);
    }
}
