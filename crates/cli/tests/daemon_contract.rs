//! The real binary against a stand-in daemon serving the real API on a real Unix socket.
//!
//! `container-apiserver` does not exist yet; this server implements just enough of the
//! contract in crates/api to check what the CLI sends and how it shows what comes back:
//! stdio streaming with exit codes, `-it` terminals, tables, error kinds, export and `cp`
//! archives both ways. It records every create and copy-in, so a test can assert what the
//! daemon would get.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use api::v1::containers_server::{Containers, ContainersServer};
use api::v1::images_server::{Images, ImagesServer};
use api::v1::system_server::{System, SystemServer};
use api::v1::{self, stdio_request::Request, stdio_response::Response};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Status, Streaming};

type BoxStream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// One CopyIn: the directory from the header and the archive's bytes.
type CopiedIn = (String, Vec<u8>);

#[derive(Default, Clone)]
struct Daemon {
    created: Arc<Mutex<Vec<v1::ContainerConfig>>>,
    /// Terminal sizes seen: the one in the attach message, then every resize.
    sizes: Arc<Mutex<Vec<(u32, u32)>>>,
    /// The client's terminal, to look at its mode while a session runs.
    tty: Arc<Mutex<Option<std::os::fd::OwnedFd>>>,
    /// Whether that terminal had echo off (raw mode) when the resize came.
    raw_at_resize: Arc<Mutex<Option<bool>>>,
    /// References pulled, in order.
    pulled: Arc<Mutex<Vec<String>>>,
    /// Signals forwarded to the `signals` container's session.
    signals: Arc<Mutex<Vec<i32>>>,
    /// What CopyIn received: the header's directory and the archive's bytes.
    copied_in: Arc<Mutex<Vec<CopiedIn>>>,
}

/// The stand-in container's filesystem: `/etc/hosts` (a file) and `/etc` (a directory).
fn container_path_stat(path: &str) -> Option<v1::PathStat> {
    match path {
        "/etc" => Some(v1::PathStat {
            name: "etc".into(),
            mode: 0o040755,
            ..Default::default()
        }),
        "/etc/hosts" => Some(v1::PathStat {
            name: "hosts".into(),
            mode: 0o100644,
            size: 20,
            ..Default::default()
        }),
        _ => None,
    }
}

/// A tar of the stand-in path, entries named from its base name.
fn container_path_tar(path: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    };
    match path {
        "/etc" => {
            add("etc/hosts", b"127.0.0.1 localhost\n");
            add("etc/hostname", b"web\n");
        }
        _ => add("hosts", b"127.0.0.1 localhost\n"),
    }
    builder.into_inner().unwrap()
}

#[tonic::async_trait]
impl System for Daemon {
    async fn version(
        &self,
        _: tonic::Request<v1::VersionRequest>,
    ) -> Result<tonic::Response<v1::VersionResponse>, Status> {
        Ok(tonic::Response::new(v1::VersionResponse {
            version: "0.0.0-test".into(),
            commit: "test".into(),
            build: "debug".into(),
            api_version: api::API_VERSION,
            app_name: "container-apiserver".into(),
        }))
    }
}

#[tonic::async_trait]
impl Containers for Daemon {
    async fn create(
        &self,
        request: tonic::Request<v1::CreateContainerRequest>,
    ) -> Result<tonic::Response<v1::CreateContainerResponse>, Status> {
        let config = request.into_inner().config.unwrap_or_default();
        if config.image == "missing" {
            return Err(api::ApiError::not_found("image missing not found").into());
        }
        let id = if config.id.is_empty() {
            "4c0e2f8a".to_owned()
        } else {
            config.id.clone()
        };
        if id == "taken" {
            return Err(
                api::ApiError::already_exists("container with id taken already exists").into(),
            );
        }
        self.created.lock().unwrap().push(config);
        Ok(tonic::Response::new(v1::CreateContainerResponse {
            id,
            warnings: vec![],
        }))
    }

    async fn start(
        &self,
        _: tonic::Request<v1::StartContainerRequest>,
    ) -> Result<tonic::Response<v1::StartContainerResponse>, Status> {
        Ok(tonic::Response::new(v1::StartContainerResponse {}))
    }

    async fn list(
        &self,
        _: tonic::Request<v1::ListContainersRequest>,
    ) -> Result<tonic::Response<v1::ListContainersResponse>, Status> {
        let containers = self
            .created
            .lock()
            .unwrap()
            .iter()
            .map(|c| v1::ContainerInfo {
                id: c.id.clone(),
                config: Some(c.clone()),
                state: v1::ContainerState::Running as i32,
                platform: "linux/amd64".into(),
                started_ms: 1_763_915_496_000,
                resources: Some(v1::Resources {
                    cpus_millis: 4000,
                    memory_bytes: 1 << 30,
                    shm_size_bytes: 0,
                }),
                ..Default::default()
            })
            .collect();
        Ok(tonic::Response::new(v1::ListContainersResponse {
            containers,
        }))
    }

    // Stats: samples 2 s apart (by their timestamps) in which `web` used half a CPU.
    async fn stats(
        &self,
        request: tonic::Request<v1::StatsRequest>,
    ) -> Result<tonic::Response<BoxStream<v1::StatsResponse>>, Status> {
        let ids = request.into_inner().ids;
        let sample = |i: u64| v1::StatsResponse {
            stats: ids
                .iter()
                .map(|id| v1::ContainerStats {
                    id: id.clone(),
                    cpu_usage_usec: 5_000_000 + i * 1_000_000,
                    memory_usage_bytes: 50 << 20,
                    memory_limit_bytes: 1 << 30,
                    network_rx_bytes: 2048 * i,
                    network_tx_bytes: 1024,
                    block_read_bytes: 3 << 20,
                    block_write_bytes: 0,
                    num_processes: 2,
                    timestamp_ms: 1_000_000 + 2000 * i as i64,
                })
                .collect(),
        };
        let items: Vec<Result<v1::StatsResponse, Status>> = (0..3).map(|i| Ok(sample(i))).collect();
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(items))))
    }

    // Export: the id's bytes in three chunks; `broken` fails after the first.
    async fn export(
        &self,
        request: tonic::Request<v1::ExportContainerRequest>,
    ) -> Result<tonic::Response<BoxStream<v1::DataChunk>>, Status> {
        let id = request.into_inner().id;
        let mut items: Vec<Result<v1::DataChunk, Status>> = vec![Ok(v1::DataChunk {
            data: format!("{id}-1|").into_bytes(),
        })];
        if id == "broken" {
            items.push(Err(Status::unavailable("the container's VM went away")));
        } else {
            items.push(Ok(v1::DataChunk {
                data: format!("{id}-2|").into_bytes(),
            }));
            items.push(Ok(v1::DataChunk {
                data: format!("{id}-3").into_bytes(),
            }));
        }
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn stat_path(
        &self,
        request: tonic::Request<v1::StatPathRequest>,
    ) -> Result<tonic::Response<v1::StatPathResponse>, Status> {
        let path = request.into_inner().path;
        match container_path_stat(&path) {
            Some(stat) => Ok(tonic::Response::new(v1::StatPathResponse {
                stat: Some(stat),
            })),
            None => Err(api::ApiError::not_found(format!("{path} not found")).into()),
        }
    }

    async fn copy_out(
        &self,
        request: tonic::Request<v1::CopyOutRequest>,
    ) -> Result<tonic::Response<BoxStream<v1::CopyOutResponse>>, Status> {
        use v1::copy_out_response::Part;
        let path = request.into_inner().path;
        let stat = container_path_stat(&path)
            .ok_or_else(|| Status::from(api::ApiError::not_found(format!("{path} not found"))))?;
        let tar = container_path_tar(&path);
        // Small chunks, so the archive crosses several messages.
        let mut items = vec![Ok(v1::CopyOutResponse {
            part: Some(Part::Stat(stat)),
        })];
        items.extend(tar.chunks(700).map(|c| {
            Ok(v1::CopyOutResponse {
                part: Some(Part::Data(c.to_vec())),
            })
        }));
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn copy_in(
        &self,
        request: tonic::Request<Streaming<v1::CopyInRequest>>,
    ) -> Result<tonic::Response<v1::CopyInResponse>, Status> {
        use v1::copy_in_request::Part;
        let mut input = request.into_inner();
        let dir = match input.next().await {
            Some(Ok(v1::CopyInRequest {
                part: Some(Part::Header(h)),
            })) => h.path,
            _ => return Err(Status::invalid_argument("first message must be the header")),
        };
        let mut data = Vec::new();
        while let Some(message) = input.next().await {
            if let Some(Part::Data(bytes)) = message?.part {
                data.extend(bytes);
            }
        }
        self.copied_in.lock().unwrap().push((dir, data));
        Ok(tonic::Response::new(v1::CopyInResponse {}))
    }

    // Attach: echo stdin to stdout upper-cased, "err" lines to stderr; the exit code is the
    // number of bytes read, so the test sees the daemon's code come through.
    async fn attach(
        &self,
        request: tonic::Request<Streaming<v1::StdioRequest>>,
    ) -> Result<tonic::Response<BoxStream<v1::StdioResponse>>, Status> {
        let mut input = request.into_inner();
        let open = match input.next().await {
            Some(Ok(v1::StdioRequest {
                request: Some(Request::Attach(open)),
            })) => open,
            _ => return Err(Status::invalid_argument("first message must be attach")),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        if open.id == "signals" {
            // A session that never ends by itself: it records forwarded signals.
            let signals = Arc::clone(&self.signals);
            tokio::spawn(async move {
                let started = Response::Started(v1::Started::default());
                let _ = tx
                    .send(Ok(v1::StdioResponse {
                        response: Some(started),
                    }))
                    .await;
                while let Some(Ok(message)) = input.next().await {
                    if let Some(Request::Signal(n)) = message.request {
                        signals.lock().unwrap().push(n);
                    }
                }
                drop(tx);
            });
            return Ok(tonic::Response::new(Box::pin(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )));
        }
        if let Some(size) = open.size {
            // A terminal session: record the sizes, exit 0 after the first resize.
            let sizes = Arc::clone(&self.sizes);
            let (tty, raw_at_resize) = (Arc::clone(&self.tty), Arc::clone(&self.raw_at_resize));
            sizes.lock().unwrap().push((size.width, size.height));
            tokio::spawn(async move {
                let send = |r: Response| v1::StdioResponse { response: Some(r) };
                let _ = tx
                    .send(Ok(send(Response::Started(v1::Started::default()))))
                    .await;
                while let Some(Ok(message)) = input.next().await {
                    if let Some(Request::Resize(size)) = message.request {
                        if let Some(fd) = tty.lock().unwrap().as_ref() {
                            let flags = nix::sys::termios::tcgetattr(fd).unwrap().local_flags;
                            *raw_at_resize.lock().unwrap() =
                                Some(!flags.contains(nix::sys::termios::LocalFlags::ECHO));
                        }
                        sizes.lock().unwrap().push((size.width, size.height));
                        let _ = tx
                            .send(Ok(send(Response::Exit(v1::Exit { code: 0 }))))
                            .await;
                        return;
                    }
                }
            });
            return Ok(tonic::Response::new(Box::pin(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )));
        }
        tokio::spawn(async move {
            let send = |r: Response| v1::StdioResponse { response: Some(r) };
            let _ = tx
                .send(Ok(send(Response::Started(v1::Started::default()))))
                .await;
            let mut total = 0;
            if open.stdin {
                while let Some(Ok(message)) = input.next().await {
                    match message.request {
                        Some(Request::Stdin(bytes)) => {
                            total += bytes.len();
                            let text = String::from_utf8_lossy(&bytes).to_uppercase().into_bytes();
                            let _ = tx.send(Ok(send(Response::Stdout(text)))).await;
                        }
                        Some(Request::CloseStdin(_)) => break,
                        _ => {}
                    }
                }
            }
            let _ = tx
                .send(Ok(send(Response::Stderr(b"done\n".to_vec()))))
                .await;
            let _ = tx
                .send(Ok(send(Response::Exit(v1::Exit { code: total as i32 }))))
                .await;
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

// Images: `alpine` is in the store; anything else is pulled with two progress events.
#[tonic::async_trait]
impl Images for Daemon {
    async fn inspect(
        &self,
        request: tonic::Request<v1::InspectImageRequest>,
    ) -> Result<tonic::Response<v1::InspectImageResponse>, Status> {
        let reference = request.into_inner().reference;
        if reference == "alpine" || self.pulled.lock().unwrap().contains(&reference) {
            Ok(tonic::Response::new(v1::InspectImageResponse {
                image: Some(v1::ImageInfo {
                    reference,
                    ..Default::default()
                }),
            }))
        } else {
            Err(api::ApiError::not_found(format!("image {reference} not found")).into())
        }
    }

    async fn pull(
        &self,
        request: tonic::Request<v1::PullImageRequest>,
    ) -> Result<tonic::Response<BoxStream<v1::PullImageResponse>>, Status> {
        use v1::pull_image_response::Event;
        let reference = request.into_inner().reference;
        self.pulled.lock().unwrap().push(reference.clone());
        let layer = |phase: v1::blob_progress::Phase| v1::PullImageResponse {
            event: Some(Event::Progress(v1::BlobProgress {
                digest: "sha256:2d8329f7d872aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    .into(),
                phase: phase as i32,
                current: 1 << 20,
                total: 1 << 20,
            })),
        };
        let items = vec![
            Ok(v1::PullImageResponse {
                event: Some(Event::Status(format!("pulling {reference}"))),
            }),
            Ok(layer(v1::blob_progress::Phase::Transferring)),
            Ok(layer(v1::blob_progress::Phase::Transferring)),
            Ok(layer(v1::blob_progress::Phase::Done)),
            Ok(v1::PullImageResponse {
                event: Some(Event::Image(v1::ImageInfo {
                    reference: format!("docker.io/library/{reference}:latest"),
                    ..Default::default()
                })),
            }),
        ];
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(items))))
    }
}

/// Serves the stand-in daemon at `<app_root>/apiserver.sock` on its own thread.
fn serve(app_root: &Path) -> Daemon {
    let daemon = Daemon::default();
    let socket = api::socket_path(app_root);
    let served = daemon.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            ready_tx.send(()).unwrap();
            tonic::transport::Server::builder()
                .add_service(SystemServer::new(served.clone()))
                .add_service(ImagesServer::new(served.clone()))
                .add_service(ContainersServer::new(served))
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    ready_rx.recv().unwrap();
    daemon
}

fn container(app_root: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_container"))
        .args(args)
        .env("CONTAINER_APP_ROOT", app_root)
        .env_remove("CONTAINER_DEFAULT_PLATFORM")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn run_streams_stdio_and_exits_with_the_containers_code() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path());
    let out = container(
        dir.path(),
        &["run", "-i", "--name", "echo", "-e", "A=1", "alpine", "cat"],
        b"hello\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");
    assert_eq!(out.status.code(), Some(6));
    let created = daemon.created.lock().unwrap();
    assert_eq!(created[0].id, "echo");
    let process = created[0].process.clone().unwrap();
    assert_eq!(process.command, ["cat"]);
    assert_eq!(process.env, ["A=1"]);
    assert!(process.stdin_open);
}

#[test]
fn run_detached_prints_the_id_and_writes_the_cidfile() {
    let dir = tempfile::tempdir().unwrap();
    serve(dir.path());
    let cidfile = dir.path().join("cid");
    let out = container(
        dir.path(),
        &[
            "run",
            "-d",
            "--cidfile",
            cidfile.to_str().unwrap(),
            "alpine",
            "sleep",
            "9",
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4c0e2f8a\n");
    assert_eq!(std::fs::read_to_string(&cidfile).unwrap(), "4c0e2f8a");
}

#[test]
fn list_renders_the_daemons_answer() {
    let dir = tempfile::tempdir().unwrap();
    serve(dir.path());
    assert_eq!(
        container(dir.path(), &["create", "--name", "web", "nginx"], b"")
            .status
            .code(),
        Some(0)
    );
    let out = container(dir.path(), &["ls"], b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ID        IMAGE     OS        ARCH      STATE     IP        CPUS      MEMORY    STARTED\n\
         web       nginx     linux     amd64     running             4         1024 MB   2025-11-23T16:31:36Z\n"
    );
    let out = container(dir.path(), &["ls", "-q"], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\n");
}

#[test]
fn daemon_errors_are_one_line_and_125() {
    let dir = tempfile::tempdir().unwrap();
    serve(dir.path());
    let out = container(dir.path(), &["create", "--name", "taken", "alpine"], b"");
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "container: container with id taken already exists\n"
    );
    let out = container(dir.path(), &["run", "--pull", "never", "missing"], b"");
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "container: image missing not found\n"
    );
    // An rpc the daemon does not serve yet is reported, not hung on.
    let out = container(dir.path(), &["image", "ls"], b"");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("container: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

// `run -it` on a real pseudo terminal: the attach carries the terminal's size, a window
// change (SIGWINCH) reaches the daemon as a resize, and the terminal is back in cooked mode
// afterwards.
#[test]
fn run_it_sends_the_window_size_and_resizes_and_restores_the_terminal() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path());
    let size = |cols, rows| libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(132, 40)), None).unwrap();
    *daemon.tty.lock().unwrap() = Some(pty.slave.try_clone().unwrap());
    let slave = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_container"))
        .args(["run", "-it", "alpine", "sh"])
        .env("CONTAINER_APP_ROOT", dir.path())
        .stdin(slave())
        .stdout(slave())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut resized = false;
    while std::time::Instant::now() < deadline {
        if daemon.sizes.lock().unwrap().len() == 1 && !resized {
            // SAFETY: TIOCSWINSZ reads one winsize from a live local; the fd is open.
            unsafe { tiocswinsz(pty.master.as_raw_fd(), &size(100, 30)) }.unwrap();
            resized = true;
        }
        if resized {
            // The child is not the terminal's session leader, so the kernel does not signal
            // it; do what a terminal emulator's session would. Repeats are harmless.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGWINCH,
            );
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(*daemon.sizes.lock().unwrap(), [(132, 40), (100, 30)]);
    assert_eq!(
        *daemon.raw_at_resize.lock().unwrap(),
        Some(true),
        "raw mode during the session"
    );
    let termios = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    assert!(
        termios
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ECHO | nix::sys::termios::LocalFlags::ICANON)
    );
}

#[test]
fn export_writes_the_file_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    serve(dir.path());
    let out_path = dir.path().join("out").join("rootfs.tar");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let out = container(
        dir.path(),
        &["export", "-o", out_path.to_str().unwrap(), "web"],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        "web-1|web-2|web-3"
    );
    // A stream that breaks leaves neither the file nor a partial one behind.
    let broken = dir.path().join("out").join("broken.tar");
    let out = container(
        dir.path(),
        &["export", "-o", broken.to_str().unwrap(), "broken"],
        b"",
    );
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "container: the container's VM went away\n"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("rootfs.tar")]);
}

#[test]
fn cp_out_follows_docker_cp_paths() {
    let dir = tempfile::tempdir().unwrap();
    serve(dir.path());
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    // A file into an existing directory keeps its name; to a new path it takes that name.
    let out = container(
        dir.path(),
        &["cp", "web:/etc/hosts", host.to_str().unwrap()],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(host.join("hosts")).unwrap(),
        "127.0.0.1 localhost\n"
    );
    let renamed = host.join("hosts.copy");
    container(
        dir.path(),
        &["cp", "web:etc/hosts", renamed.to_str().unwrap()],
        b"",
    );
    assert_eq!(
        std::fs::read_to_string(&renamed).unwrap(),
        "127.0.0.1 localhost\n"
    );
    // A directory to a new path becomes that directory.
    let etc = host.join("etc-copy");
    let out = container(dir.path(), &["cp", "web:/etc", etc.to_str().unwrap()], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("hostname")).unwrap(),
        "web\n"
    );
    // A missing path is the daemon's NOT_FOUND, on one line.
    let out = container(
        dir.path(),
        &["cp", "web:/nope", host.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "container: /nope not found\n"
    );
    // `-` writes the raw archive to stdout.
    let out = container(dir.path(), &["cp", "web:/etc/hosts", "-"], b"");
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["hosts"]);
}

#[test]
fn cp_in_names_entries_from_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path());
    let src = dir.path().join("app.conf");
    std::fs::write(&src, "listen 80\n").unwrap();
    let src_dir = dir.path().join("site");
    std::fs::create_dir(&src_dir).unwrap();
    std::fs::write(src_dir.join("index.html"), "<h1>hi</h1>").unwrap();
    for (source, dest) in [
        (src.to_str().unwrap(), "web:/etc"), // into an existing directory
        (src.to_str().unwrap(), "web:/etc/app.conf"), // a new file in /etc
        (src_dir.to_str().unwrap(), "web:/srv"), // a directory to a new path
    ] {
        let out = container(dir.path(), &["cp", source, dest], b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let copied = daemon.copied_in.lock().unwrap();
    let entries = |data: &[u8]| -> Vec<(String, String)> {
        let mut archive = tar::Archive::new(data);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut e, &mut text).unwrap();
                (e.path().unwrap().display().to_string(), text)
            })
            .collect()
    };
    assert_eq!(copied[0].0, "/etc");
    assert_eq!(
        entries(&copied[0].1),
        [("app.conf".to_owned(), "listen 80\n".to_owned())]
    );
    assert_eq!(copied[1].0, "/etc");
    assert_eq!(
        entries(&copied[1].1),
        [("app.conf".to_owned(), "listen 80\n".to_owned())]
    );
    assert_eq!(copied[2].0, "/");
    let site = entries(&copied[2].1);
    assert!(
        site.contains(&("srv/index.html".to_owned(), "<h1>hi</h1>".to_owned())),
        "{site:?}"
    );
}

// `container ls | head -0`: a reader that went away ends the command quietly with the
// SIGPIPE status, not a panic.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    serve(dir.path());
    assert_eq!(
        container(dir.path(), &["create", "--name", "web", "nginx"], b"")
            .status
            .code(),
        Some(0)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_container"))
        .args(["ls", "-a"])
        .env("CONTAINER_APP_ROOT", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(141));
}

// Without a terminal, signals sent to the CLI go to the container; the third Ctrl-C lets
// the user out of a session that does not end (exit 1, Apple's rule).
#[test]
fn signals_are_forwarded_and_three_interrupts_leave() {
    use nix::sys::signal::{Signal, kill};
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path());
    let child = Command::new(env!("CARGO_BIN_EXE_container"))
        .args(["run", "--name", "signals", "alpine"])
        .env("CONTAINER_APP_ROOT", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while daemon.signals.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // Signal only once the CLI catches them (their default action would kill it): wait
    // until /proc shows handlers for SIGINT, SIGTERM and SIGUSR1.
    let caught = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .unwrap_or("0");
        u64::from_str_radix(mask.trim(), 16).unwrap_or(0)
    };
    let wanted = [2u64, 15, 10].iter().fold(0, |m, s| m | 1 << (s - 1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while caught() & wanted != wanted && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    kill(pid, Signal::SIGUSR1).unwrap();
    wait_for(1);
    let before = daemon.signals.lock().unwrap().len();
    kill(pid, Signal::SIGTERM).unwrap();
    wait_for(before + 1);
    kill(pid, Signal::SIGINT).unwrap();
    wait_for(before + 2);
    kill(pid, Signal::SIGINT).unwrap();
    wait_for(before + 3);
    kill(pid, Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "container: interrupted three times: leaving the container running\n"
    );
    let signals = daemon.signals.lock().unwrap();
    assert_eq!(before, 1);
    assert_eq!(*signals, [10, 15, 2, 2], "{signals:?}");
}

// An archive is never sprayed over a terminal.
#[test]
fn export_refuses_a_terminal_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    serve(dir.path());
    let pty = nix::pty::openpty(None, None).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_container"))
        .args(["export", "web"])
        .env("CONTAINER_APP_ROOT", dir.path())
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "container: refusing to write an archive to a terminal: use -o or redirect stdout\n"
    );
}

#[test]
fn stats_no_stream_shows_cpu_from_two_samples() {
    let dir = tempfile::tempdir().unwrap();
    serve(dir.path());
    let out = container(dir.path(), &["stats", "--no-stream", "web"], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Container ID   Cpu %     Memory Usage         Net Rx/Tx           Block I/O       Pids\n\
         web            50.00%    50.0 MiB / 1.0 GiB   2.0 KiB / 1.0 KiB   3.0 MiB / 0 B   2\n"
    );
    let out = container(
        dir.path(),
        &["stats", "--no-stream", "--format", "json", "web"],
        b"",
    );
    let samples: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(samples[0]["cpuUsageUsec"], 5_000_000);
    assert_eq!(samples[0]["numProcesses"], 2);
}

#[test]
fn run_pulls_a_missing_image_first_with_progress_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(dir.path());
    let out = container(dir.path(), &["image", "pull", "nginx"], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "docker.io/library/nginx:latest\n"
    );
    // One line per phase change, not per progress event.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "pulling nginx\n2d8329f7d872: transferring (1.0 MiB)\n2d8329f7d872: done (1.0 MiB)\n"
    );
    // Present: no pull. Missing: pulled before the create. --pull never: left to the daemon.
    container(dir.path(), &["run", "-d", "alpine"], b"");
    container(dir.path(), &["run", "-d", "redis"], b"");
    container(dir.path(), &["run", "-d", "--pull", "always", "nginx"], b"");
    let out = container(
        dir.path(),
        &["run", "-d", "--pull", "never", "postgres"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(*daemon.pulled.lock().unwrap(), ["nginx", "redis", "nginx"]);
    let created = daemon.created.lock().unwrap();
    let no_pull: Vec<bool> = created.iter().map(|c| c.no_pull).collect();
    assert_eq!(no_pull, [false, false, false, true]);
}
