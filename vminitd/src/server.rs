//! The gRPC service: maps each RPC of `container.agent.v1.Agent` onto the modules above and
//! every error onto a small set of status codes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use agent::v1 as pb;
use agent::v1::agent_server::Agent;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use wire::ChunkWriter;
use wire::v1::{ContainerStats, DataChunk, NetworkStats};

use crate::fsops::FsError;
use crate::net::NetError;
use crate::process::{CreateRequest, Manager, ProcessError};
use crate::{boot, cgroup, fsops, net, relay};
use spec::error_chain as chain;

fn fs_status(e: FsError) -> Status {
    let msg = chain(&e);
    match e {
        FsError::NotAbsolute(_) | FsError::Invalid(_) | FsError::Options(_) => {
            Status::invalid_argument(msg)
        }
        FsError::NoSuchDisk(_) | FsError::NotFound(_) => Status::not_found(msg),
        FsError::Io { .. } => Status::internal(msg),
    }
}

fn net_status(e: NetError) -> Status {
    let msg = chain(&e);
    match e {
        NetError::NoLink(_) => Status::not_found(msg),
        NetError::Invalid { .. } => Status::invalid_argument(msg),
        NetError::Netlink { ref source, .. } if source.raw_os_error() == Some(libc::EEXIST) => {
            Status::already_exists(msg)
        }
        NetError::Netlink { .. } => Status::internal(msg),
    }
}

fn proc_status(e: ProcessError) -> Status {
    let msg = chain(&e);
    match e {
        ProcessError::Exists(_) => Status::already_exists(msg),
        ProcessError::NotFound(_) | ProcessError::NoContainer(_) => Status::not_found(msg),
        ProcessError::InvalidId(_) | ProcessError::Spec(_) | ProcessError::User(_) => {
            Status::invalid_argument(msg)
        }
        ProcessError::Precondition(_) | ProcessError::Setup(_) => Status::failed_precondition(msg),
        ProcessError::Dial { .. } => Status::unavailable(msg),
        ProcessError::Io { .. } | ProcessError::Cgroup(_) => Status::internal(msg),
    }
}

fn relay_status(e: relay::RelayError) -> Status {
    use relay::RelayError as R;
    match e {
        R::Invalid(_) => Status::invalid_argument(chain(&e)),
        R::Process(p) => proc_status(p),
        R::Unavailable { .. } => Status::unavailable(chain(&e)),
        R::Io { .. } => Status::internal(chain(&e)),
    }
}

fn binfmt_status(e: crate::binfmt::BinfmtError) -> Status {
    use crate::binfmt::BinfmtError as B;
    let msg = chain(&e);
    match e {
        B::Invalid(_) => Status::invalid_argument(msg),
        B::NotFound(_) => Status::not_found(msg),
        B::Io { .. } => Status::internal(msg),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
}

/// How long the kernel may take to settle a container's freezer state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Agent service.
pub struct Service {
    procs: Manager,
}

impl Service {
    /// A service over a process table.
    pub fn new(procs: Manager) -> Self {
        Service { procs }
    }
}

/// Feeds tar bytes from a channel to a blocking reader.
struct ChanReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
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

/// The size of the archive chunks CopyOut sends.
const CHUNK: usize = 256 * 1024;

type DataStream = Pin<Box<dyn Stream<Item = Result<DataChunk, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Agent for Service {
    async fn version(
        &self,
        _: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        let kernel_release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().to_string())
            .unwrap_or_default();
        Ok(Response::new(pb::VersionResponse {
            protocol_version: agent::PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release,
        }))
    }

    async fn mount(&self, r: Request<pb::MountRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        blocking(move || {
            fsops::mount(&r.source, &r.target, &r.fstype, &r.options, r.create_target)
                .map_err(fs_status)
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn umount(&self, r: Request<pb::UmountRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        blocking(move || fsops::umount(&r.target, r.lazy).map_err(fs_status)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn mkdir(&self, r: Request<pb::MkdirRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        blocking(move || fsops::mkdir(&r.path, r.mode, r.parents, r.uid, r.gid).map_err(fs_status))
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn write_file(
        &self,
        r: Request<pb::WriteFileRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        blocking(move || {
            fsops::write_file(&r.path, &r.data, r.mode, r.append, r.create_parents)
                .map_err(fs_status)
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn stat(
        &self,
        r: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let r = r.into_inner();
        let s = blocking(move || fsops::stat(&r.path).map_err(fs_status)).await?;
        Ok(Response::new(pb::StatResponse {
            exists: s.exists,
            mode: s.mode,
            size: s.size,
            uid: s.uid,
            gid: s.gid,
            mtime: s.mtime,
            link_target: s.link_target,
        }))
    }

    type CopyOutStream = DataStream;

    async fn copy_out(
        &self,
        r: Request<pb::CopyOutRequest>,
    ) -> Result<Response<Self::CopyOutStream>, Status> {
        let r = r.into_inner();
        let path = r.path;
        fsops::absolute(&path).map_err(fs_status)?;
        let root = if r.root.is_empty() {
            "/".to_string()
        } else {
            r.root
        };
        fsops::absolute(&root).map_err(fs_status)?;
        let export = r.export;
        {
            let (root, p) = (PathBuf::from(&root), PathBuf::from(&path));
            let found =
                blocking(move || crate::archive::stat_in_root(&root, &p).map_err(fs_status))
                    .await?;
            if found.is_none() {
                return Err(Status::not_found(format!("{path:?} does not exist")));
            }
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut w = ChunkWriter::new(tx.clone(), CHUNK);
            let res = crate::archive::tar_out(Path::new(&root), Path::new(&path), export, &mut w)
                .and_then(|()| {
                    w.flush().map_err(|source| FsError::Io {
                        what: "sending",
                        path: path.clone(),
                        source,
                    })
                });
            if let Err(e) = res {
                let _ = tx.blocking_send(Err(fs_status(e)));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn copy_in(
        &self,
        r: Request<Streaming<pb::CopyInRequest>>,
    ) -> Result<Response<pb::Empty>, Status> {
        let mut stream = r.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("copy_in stream is empty"))?;
        let Some(pb::copy_in_request::Part::Header(h)) = first.part else {
            return Err(Status::invalid_argument(
                "the first copy_in message must be a header",
            ));
        };
        let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
        let dest = h.destination.clone();
        let root = h.root.clone();
        let overlay_layer = h.overlay_layer;
        let unpack = tokio::task::spawn_blocking(move || {
            let reader = ChanReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            };
            if overlay_layer {
                if !root.is_empty() {
                    return Err(Status::invalid_argument(
                        "an overlay layer unpacks into a guest directory, without a root",
                    ));
                }
                crate::overlay_layer::unpack(&dest, reader).map_err(fs_status)
            } else {
                crate::archive::tar_in(&root, &dest, reader).map_err(fs_status)
            }
        });
        let mut feed_err = None;
        loop {
            match stream.message().await {
                Ok(Some(pb::CopyInRequest {
                    part: Some(pb::copy_in_request::Part::Data(d)),
                })) => {
                    if tx.send(d).await.is_err() {
                        break; // the unpacker stopped; its error is reported below
                    }
                }
                Ok(Some(_)) => {
                    feed_err = Some(Status::invalid_argument(
                        "only data may follow the copy_in header",
                    ));
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    feed_err = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let res = unpack
            .await
            .map_err(|e| Status::internal(format!("worker failed: {e}")))?;
        if let Some(e) = feed_err {
            return Err(e);
        }
        res?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_links(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::ListLinksResponse>, Status> {
        let links = blocking(|| net::list_links().map_err(net_status)).await?;
        Ok(Response::new(pb::ListLinksResponse {
            links: links
                .into_iter()
                .map(|l| pb::Link {
                    name: l.name,
                    mac: l.mac,
                    mtu: l.mtu,
                    up: l.up,
                })
                .collect(),
        }))
    }

    async fn link_set(
        &self,
        r: Request<pb::LinkSetRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        blocking(move || {
            net::link_set(&r.name, &r.mac, r.up, r.mtu, &r.rename_to, &r.set_mac)
                .map_err(net_status)
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn address_add(
        &self,
        r: Request<pb::AddressAddRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        blocking(move || net::address_add(&r.link, &r.link_mac, &r.cidr).map_err(net_status))
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn route_add(
        &self,
        r: Request<pb::RouteAddRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        blocking(move || {
            net::route_add(&r.link, &r.link_mac, &r.destination, &r.gateway).map_err(net_status)
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn configure_dns(
        &self,
        r: Request<pb::ConfigureDnsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        let content = fsops::render_resolv_conf(&r.nameservers, &r.search, &r.options);
        blocking(move || {
            fsops::write_file(&r.path, content.as_bytes(), 0o644, false, true).map_err(fs_status)
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn configure_hosts(
        &self,
        r: Request<pb::ConfigureHostsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        let entries: Vec<(String, Vec<String>)> =
            r.entries.into_iter().map(|e| (e.ip, e.names)).collect();
        let content = fsops::render_hosts(&entries).map_err(fs_status)?;
        blocking(move || {
            fsops::write_file(&r.path, content.as_bytes(), 0o644, false, true).map_err(fs_status)
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn create_process(
        &self,
        r: Request<pb::CreateProcessRequest>,
    ) -> Result<Response<pb::CreateProcessResponse>, Status> {
        let r = r.into_inner();
        let stdio = r.stdio.unwrap_or_default();
        crate::debug!("create process {} of container {}", r.id, r.container_id);
        self.procs
            .create(CreateRequest {
                id: r.id,
                container_id: r.container_id,
                spec_json: r.oci_spec,
                stdin_port: stdio.stdin_port,
                stdout_port: stdio.stdout_port,
                stderr_port: stdio.stderr_port,
                terminal: r.terminal,
                user: r.user,
                init: r.init,
            })
            .await
            .map_err(proc_status)?;
        Ok(Response::new(pb::CreateProcessResponse {}))
    }

    async fn start_process(
        &self,
        r: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::StartProcessResponse>, Status> {
        let pid = self
            .procs
            .start(&r.into_inner().id)
            .await
            .map_err(proc_status)?;
        Ok(Response::new(pb::StartProcessResponse { pid }))
    }

    async fn wait_process(
        &self,
        r: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::WaitProcessResponse>, Status> {
        let (exit_code, exited_at_unix_nanos) = self
            .procs
            .wait(&r.into_inner().id)
            .await
            .map_err(proc_status)?;
        Ok(Response::new(pb::WaitProcessResponse {
            exit_code,
            exited_at_unix_nanos,
        }))
    }

    async fn kill_process(
        &self,
        r: Request<pb::KillProcessRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        self.procs
            .kill(&r.id, r.signal, r.all)
            .map_err(proc_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn resize_process(
        &self,
        r: Request<pb::ResizeProcessRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        let size = r
            .size
            .ok_or_else(|| Status::invalid_argument("resize: no terminal size given"))?;
        self.procs
            .resize(&r.id, size.rows, size.cols)
            .map_err(proc_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn close_stdin(&self, r: Request<pb::ProcessRef>) -> Result<Response<pb::Empty>, Status> {
        self.procs
            .close_stdin(&r.into_inner().id)
            .map_err(proc_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn delete_process(
        &self,
        r: Request<pb::ProcessRef>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.procs
            .delete(&r.into_inner().id)
            .await
            .map_err(proc_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn stats(
        &self,
        r: Request<pb::StatsRequest>,
    ) -> Result<Response<ContainerStats>, Status> {
        let dir = self
            .procs
            .cgroup_of(&r.into_inner().container_id)
            .map_err(proc_status)?;
        let (u, links) = blocking(move || {
            let u = cgroup::usage(&dir).map_err(|e| Status::internal(chain(&e)))?;
            Ok((u, net::counters(Path::new("/sys/class/net"))))
        })
        .await?;
        let online_cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .unwrap_or(1) as u32;
        let guest_memory_bytes = nix::sys::sysinfo::sysinfo()
            .map(|s| s.ram_total())
            .unwrap_or(0);
        Ok(Response::new(ContainerStats {
            cpu_usage_usec: u.cpu_usec,
            memory_usage_bytes: u.memory,
            memory_limit_bytes: u.memory_limit,
            pids: u.pids,
            block_read_bytes: u.read_bytes,
            block_write_bytes: u.write_bytes,
            networks: links
                .into_iter()
                .map(|l| NetworkStats {
                    link: l.link,
                    rx_bytes: l.rx_bytes,
                    tx_bytes: l.tx_bytes,
                    rx_packets: l.rx_packets,
                    tx_packets: l.tx_packets,
                })
                .collect(),
            online_cpus,
            guest_memory_bytes,
        }))
    }

    async fn set_time(
        &self,
        r: Request<pb::SetTimeRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let n = r.into_inner().unix_nanos;
        if n <= 0 {
            return Err(Status::invalid_argument(format!(
                "time {n} is not after the epoch"
            )));
        }
        let ts = nix::sys::time::TimeSpec::new(n / 1_000_000_000, n % 1_000_000_000);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
            .map_err(|e| Status::internal(format!("clock_settime: {e}")))?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn sync(&self, _: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        blocking(|| {
            nix::unistd::sync();
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn serve_socket(
        &self,
        r: Request<pb::ServeSocketRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        relay::serve_socket(&self.procs, &r.path, r.port)
            .await
            .map_err(relay_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn dial_socket(
        &self,
        r: Request<pb::DialSocketRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        relay::dial_socket(&self.procs, &r.container_id, &r.path, r.port)
            .await
            .map_err(relay_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn freeze(&self, r: Request<pb::FreezeRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        let dir = self.procs.cgroup_of(&r.container_id).map_err(proc_status)?;
        blocking(move || {
            cgroup::freeze(&dir, r.frozen, FREEZE_TIMEOUT).map_err(|e| match e {
                cgroup::CgroupError::FreezeTimeout { .. } => Status::deadline_exceeded(chain(&e)),
                cgroup::CgroupError::Io { .. } => Status::internal(chain(&e)),
            })
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn register_binfmt(
        &self,
        r: Request<pb::RegisterBinfmtRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        blocking(move || {
            crate::binfmt::register(&r.name, &r.arch, &r.interpreter).map_err(binfmt_status)
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn mount_step_root(
        &self,
        r: Request<pb::StepRootRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        let points: Vec<crate::step_root::MountPoint> = r
            .mount_points
            .into_iter()
            .map(|p| crate::step_root::MountPoint {
                path: p.path,
                file: p.file,
            })
            .collect();
        blocking(move || crate::step_root::mount(&r.dir, &r.lowers, &points).map_err(fs_status))
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn prepare_container(
        &self,
        r: Request<pb::PrepareContainerRequest>,
    ) -> Result<Response<pb::PrepareContainerResponse>, Status> {
        crate::prepare::run(self, r.into_inner())
            .await
            .map(Response::new)
    }

    type CaptureLayerStream = DataStream;

    async fn capture_layer(
        &self,
        r: Request<pb::CaptureLayerRequest>,
    ) -> Result<Response<Self::CaptureLayerStream>, Status> {
        let r = r.into_inner();
        let upper = PathBuf::from(fsops::absolute(&r.upper_dir).map_err(fs_status)?);
        let epoch = r.source_date_epoch;
        let mut exclude = Vec::new();
        for e in &r.exclude {
            let p = PathBuf::from(e);
            if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                return Err(Status::invalid_argument(format!(
                    "exclude {e:?} is not a plain relative path"
                )));
            }
            exclude.push(p);
        }
        {
            let u = upper.clone();
            let found = blocking(move || Ok(u.is_dir())).await?;
            if !found {
                return Err(Status::not_found(format!(
                    "upper directory {} does not exist",
                    upper.display()
                )));
            }
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut w = ChunkWriter::new(tx.clone(), CHUNK);
            let res = crate::layer::capture(&upper, epoch, &exclude, &mut w).and_then(|()| {
                w.flush().map_err(|source| FsError::Io {
                    what: "sending",
                    path: upper.display().to_string(),
                    source,
                })
            });
            if let Err(e) = res {
                let _ = tx.blocking_send(Err(fs_status(e)));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn shutdown(
        &self,
        r: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        if !boot::is_pid1() {
            return Err(Status::failed_precondition(
                "shutdown is only served by the vm's init",
            ));
        }
        let grace = Duration::from_secs(r.into_inner().grace_seconds as u64);
        let procs = self.procs.clone();
        tokio::spawn(async move {
            // Let the answer reach the host first.
            tokio::time::sleep(Duration::from_millis(100)).await;
            crate::info!("shutting down (grace {}s)", grace.as_secs());
            let all = nix::unistd::Pid::from_raw(-1);
            let _ = nix::sys::signal::kill(all, nix::sys::signal::Signal::SIGTERM);
            procs.wait_all(grace).await;
            let _ = nix::sys::signal::kill(all, nix::sys::signal::Signal::SIGKILL);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tokio::task::spawn_blocking(unmount_all).await;
            boot::fatal("shutdown requested");
        });
        Ok(Response::new(pb::Empty {}))
    }
}

/// Syncs, then unmounts everything but the pseudo-filesystems, innermost first.
fn unmount_all() {
    nix::unistd::sync();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let keep = ["/", "/proc", "/sys", "/dev", "/dev/pts", "/sys/fs/cgroup"];
    for line in mounts.lines().rev() {
        let Some(target) = line.split_whitespace().nth(1) else {
            continue;
        };
        if keep.contains(&target) {
            continue;
        }
        let target = target.replace("\\040", " ");
        if let Err(e) = nix::mount::umount2(target.as_str(), nix::mount::MntFlags::MNT_DETACH) {
            crate::warn!("unmounting {target}: {e}");
        }
    }
    nix::unistd::sync();
}

/// Only the host (CID 2) may talk to the agent: containers share the guest's network and, if
/// their seccomp profile allowed vsock sockets, could otherwise reach it from inside.
fn host_only(
    incoming: tokio_vsock::Incoming,
) -> impl Stream<Item = std::io::Result<tokio_vsock::VsockStream>> {
    use tokio_stream::StreamExt;
    incoming.filter(|conn| match conn {
        Ok(s) => match s.peer_addr() {
            Ok(peer) if peer.cid() == tokio_vsock::VMADDR_CID_HOST => true,
            Ok(peer) => {
                crate::warn!("refusing an agent connection from cid {}", peer.cid());
                false
            }
            Err(_) => false,
        },
        Err(_) => true,
    })
}

/// Serves the agent on vsock until the listener fails.
pub async fn serve(procs: Manager) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, agent::AGENT_VSOCK_PORT);
    let listener = tokio_vsock::VsockListener::bind(addr)?;
    crate::info!(
        "serving protocol {} on vsock port {}",
        agent::PROTOCOL_VERSION,
        agent::AGENT_VSOCK_PORT
    );
    let svc = agent::v1::agent_server::AgentServer::new(Service::new(procs))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming(host_only(listener.incoming()))
        .await?;
    Ok(())
}
