//! The process table: creating container processes through the setup helper, their stdio
//! over vsock, start, wait, signals, terminals, delete.
//!
//! Stdio: for each non-zero port the guest dials the host (vsock CID 2) during
//! CreateProcess, before the helper is even spawned, so a process can never write before its
//! stream is connected. Output is pumped from pipes (or the pty) to the sockets; a process's
//! exit is reported only after its output reached end of file, so nothing is lost.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use crate::reaper::Reaper;
use crate::setup::{CONTROL_FD, Report, SETUP_ARG};
use crate::spec::{self, LaunchInputs};
use crate::{cgroup, user};

/// The host's vsock CID.
pub const HOST_CID: u32 = 2;
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an exec process's output may stay open after it exited (a background child
/// can hold it forever); a container's first process has no such limit because its pid
/// namespace dies with it.
const EXEC_DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Errors of process handling.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process {0} already exists")]
    Exists(String),
    #[error("process {0} not found")]
    NotFound(String),
    #[error("container {0} not found")]
    NoContainer(String),
    #[error("invalid id {0:?}")]
    InvalidId(String),
    #[error("{0}")]
    Precondition(String),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("dialing host vsock port {port}")]
    Dial {
        port: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("container setup failed: {0}")]
    Setup(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Io { what, source }
}

fn nix_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ProcessError {
    let what = what.into();
    move |e| ProcessError::Io {
        what,
        source: e.into(),
    }
}

/// Where things are; tests on the host point these elsewhere.
#[derive(Debug, Clone)]
pub struct Config {
    /// The vminitd binary to run as the setup helper.
    pub self_exe: PathBuf,
    /// The vminitd binary to bind into containers started with `init`.
    pub init_binary: PathBuf,
    /// The cgroup v2 directory containers' cgroups are created under.
    pub cgroup_root: PathBuf,
    /// How stdio ports are dialed.
    pub dialer: Dialer,
}

/// How the guest reaches the host's stdio ports.
#[derive(Debug, Clone)]
pub enum Dialer {
    /// vsock CID 2 (the host), the port as given: what runs in a VM.
    Vsock,
    /// A Unix socket `<dir>/<port>.sock`: lets tests on the host play the host's part.
    UnixDir(PathBuf),
}

/// A connected stdio stream.
pub trait HostStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> HostStream for T {}
type Stream = Box<dyn HostStream>;

impl Default for Config {
    fn default() -> Self {
        Config {
            self_exe: "/proc/self/exe".into(),
            init_binary: "/init".into(),
            cgroup_root: cgroup::ROOT.into(),
            dialer: Dialer::Vsock,
        }
    }
}

/// What the caller asks for in CreateProcess.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub id: String,
    pub container_id: String,
    pub spec_json: Vec<u8>,
    pub stdin_port: u32,
    pub stdout_port: u32,
    pub stderr_port: u32,
    pub terminal: bool,
    pub user: String,
    pub init: bool,
}

struct Container {
    rootfs: PathBuf,
    cgroup: PathBuf,
    init_pid: u32,
}

struct Proc {
    container_id: String,
    is_init: bool,
    pid: u32,
    ctrl: Mutex<Option<OwnedFd>>,
    exit: watch::Receiver<Option<(i32, i64)>>,
    io_done: watch::Receiver<bool>,
    stdin_close: Mutex<Option<oneshot::Sender<()>>>,
    pty: Option<Arc<AsyncFd<OwnedFd>>>,
}

#[derive(Default)]
struct State {
    procs: HashMap<String, Arc<Proc>>,
    containers: HashMap<String, Container>,
}

/// The process table.
#[derive(Clone)]
pub struct Manager {
    state: Arc<Mutex<State>>,
    reaper: Reaper,
    cfg: Config,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !id.starts_with('.')
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

async fn dial(dialer: &Dialer, port: u32) -> Result<Stream, ProcessError> {
    let deadline = tokio::time::Instant::now() + DIAL_TIMEOUT;
    loop {
        let attempt: std::io::Result<Stream> = match dialer {
            Dialer::Vsock => {
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(HOST_CID, port))
                    .await
                    .map(|s| Box::new(s) as Stream)
            }
            Dialer::UnixDir(dir) => {
                tokio::net::UnixStream::connect(dir.join(format!("{port}.sock")))
                    .await
                    .map(|s| Box::new(s) as Stream)
            }
        };
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(ProcessError::Dial { port, source: e });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// [`dial`] for a port the request gave; 0 means the stream is not wanted.
async fn dial_port(dialer: &Dialer, port: u32) -> Result<Option<Stream>, ProcessError> {
    if port == 0 {
        return Ok(None);
    }
    dial(dialer, port).await.map(Some)
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), ProcessError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(nix_err("fcntl"))?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(nix_err("fcntl"))?;
    Ok(())
}

fn set_cloexec(fd: &OwnedFd) -> Result<(), ProcessError> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(nix_err("fcntl"))?;
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ProcessError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(nix_err("pipe"))
}

fn dev_null(write: bool) -> Result<OwnedFd, ProcessError> {
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(io_err("opening /dev/null"))?;
    Ok(f.into())
}

/// Copies a pipe's read end to a writer until end of file.
async fn pump_out<W: tokio::io::AsyncWrite + Unpin>(fd: OwnedFd, mut w: W) {
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() {
                    // The host went away; keep draining so the process never blocks on a full pipe.
                    while let Ok(n) = rx.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    return;
                }
            }
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

/// Copies a reader into a pipe's write end until end of file or until closed.
async fn pump_in<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    fd: OwnedFd,
    close: oneshot::Receiver<()>,
) {
    let Ok(mut tx) = tokio::net::unix::pipe::Sender::from_owned_fd(fd) else {
        return;
    };
    let copy = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = copy => {}
        _ = close => {}
    }
    // Dropping the sender closes the process's stdin.
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: reading into a valid, exclusively borrowed buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn write_fd(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: writing from a valid buffer.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// pty master to the host until the slave side is gone (EIO).
async fn pump_pty_out<W: tokio::io::AsyncWrite + Unpin>(
    master: Arc<AsyncFd<OwnedFd>>,
    mut w: Option<W>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut guard) = master.readable().await else {
            break;
        };
        match guard.try_io(|fd| read_fd(fd.get_ref().as_raw_fd(), &mut buf)) {
            Err(_would_block) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                if let Some(out) = w.as_mut()
                    && out.write_all(&buf[..n]).await.is_err()
                {
                    w = None;
                }
            }
        }
    }
    if let Some(mut out) = w {
        let _ = out.flush().await;
        let _ = out.shutdown().await;
    }
}

/// Host to the pty master. Closing stdin of a terminal sends EOF (^D), as a terminal would.
async fn pump_pty_in<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    master: Arc<AsyncFd<OwnedFd>>,
    close: oneshot::Receiver<()>,
) {
    let write_all = |data: Vec<u8>| {
        let master = master.clone();
        async move {
            let mut off = 0;
            while off < data.len() {
                let Ok(mut guard) = master.writable().await else {
                    return false;
                };
                match guard.try_io(|fd| write_fd(fd.get_ref().as_raw_fd(), &data[off..])) {
                    Err(_would_block) => continue,
                    Ok(Ok(n)) => off += n,
                    Ok(Err(_)) => return false,
                }
            }
            true
        }
    };
    let copy = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !write_all(buf[..n].to_vec()).await {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = copy => {}
        _ = close => {}
    }
    write_all(vec![4u8]).await;
}

impl Manager {
    /// A table whose exits come from `reaper`.
    pub fn new(reaper: Reaper, cfg: Config) -> Self {
        Manager {
            state: Arc::default(),
            reaper,
            cfg,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Poisoning only follows a panic elsewhere; the table itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Proc>, ProcessError> {
        self.lock()
            .procs
            .get(id)
            .cloned()
            .ok_or_else(|| ProcessError::NotFound(id.to_string()))
    }

    /// CreateProcess.
    pub async fn create(&self, req: CreateRequest) -> Result<(), ProcessError> {
        if !valid_id(&req.id) {
            return Err(ProcessError::InvalidId(req.id));
        }
        if !valid_id(&req.container_id) {
            return Err(ProcessError::InvalidId(req.container_id));
        }
        let is_init = req.id == req.container_id;
        let spec = spec::parse(&req.spec_json)?;
        let (rootfs, cgroup_dir, exec_of) = {
            let st = self.lock();
            if st.procs.contains_key(&req.id) {
                return Err(ProcessError::Exists(req.id));
            }
            if is_init {
                (spec::rootfs(&spec)?, None, None)
            } else {
                let c = st
                    .containers
                    .get(&req.container_id)
                    .ok_or_else(|| ProcessError::NoContainer(req.container_id.clone()))?;
                let running = st
                    .procs
                    .get(&req.container_id)
                    .is_some_and(|init| init.exit.borrow().is_none());
                if !running {
                    return Err(ProcessError::Precondition(format!(
                        "container {} is not running",
                        req.container_id
                    )));
                }
                (c.rootfs.clone(), Some(c.cgroup.clone()), Some(c.init_pid))
            }
        };
        if is_init && !rootfs.is_dir() {
            return Err(ProcessError::Precondition(format!(
                "rootfs {} is not a directory",
                rootfs.display()
            )));
        }
        let (passwd, groups) = user::read_files(&rootfs)?;
        let exec_user = if req.user.is_empty() {
            None
        } else {
            Some(user::resolve(&req.user, &passwd, &groups)?)
        };
        let home = match &exec_user {
            Some(u) => u.home.clone(),
            None => user::home_of(
                spec.process().as_ref().map(|p| p.user().uid()).unwrap_or(0),
                &passwd,
            ),
        };
        let init_binary = self.cfg.init_binary.display().to_string();
        let mut launch = spec::launch(
            &spec,
            LaunchInputs {
                exec_of,
                cgroup: None,
                terminal: req.terminal,
                user: exec_user,
                home,
                init: req.init,
                hostname_override: None,
                init_binary: &init_binary,
            },
        )?;
        // Connect the streams first: nothing runs until the host is listening on each. The
        // dials go out together: each is a round trip to the host.
        let stderr_port = if req.terminal { 0 } else { req.stderr_port };
        let (stdin_sock, stdout_sock, stderr_sock) = tokio::try_join!(
            dial_port(&self.cfg.dialer, req.stdin_port),
            dial_port(&self.cfg.dialer, req.stdout_port),
            dial_port(&self.cfg.dialer, stderr_port),
        )?;

        let cgroup_dir = match cgroup_dir {
            Some(d) => d,
            None => {
                let res = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
                let dir = self.cfg.cgroup_root.join(&req.id);
                cgroup::create_in(&dir, res)?;
                dir
            }
        };
        launch.cgroup = Some(cgroup_dir.clone());

        let result = self
            .spawn(&req, &launch, stdin_sock, stdout_sock, stderr_sock, is_init)
            .await;
        let proc_ = match result {
            Ok(p) => p,
            Err(e) => {
                if is_init {
                    let _ = cgroup::destroy(&cgroup_dir);
                }
                return Err(e);
            }
        };
        let mut st = self.lock();
        if is_init {
            st.containers.insert(
                req.container_id.clone(),
                Container {
                    rootfs,
                    cgroup: cgroup_dir,
                    init_pid: proc_.pid,
                },
            );
        }
        st.procs.insert(req.id.clone(), proc_);
        Ok(())
    }

    async fn spawn(
        &self,
        req: &CreateRequest,
        launch: &spec::Launch,
        stdin_sock: Option<Stream>,
        stdout_sock: Option<Stream>,
        stderr_sock: Option<Stream>,
        is_init: bool,
    ) -> Result<Arc<Proc>, ProcessError> {
        let (io_tx, io_rx) = watch::channel(false);
        let (close_tx, close_rx) = oneshot::channel();
        let mut pty = None;
        let mut out_tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        let (child_in, child_out, child_err): (OwnedFd, OwnedFd, OwnedFd);
        if req.terminal {
            let ws = console_size(&req.spec_json);
            let p = nix::pty::openpty(ws.as_ref(), None).map_err(nix_err("openpty"))?;
            set_cloexec(&p.master)?;
            set_cloexec(&p.slave)?;
            set_nonblocking(&p.master)?;
            // SAFETY: the master fd is owned by the AsyncFd from here on and is neither closed
            // nor replaced while registered.
            let master = Arc::new(
                unsafe { AsyncFd::register(p.master) }
                    .map_err(|e| io_err("registering the pty")(e.into_parts().1))?,
            );
            child_in = p.slave.try_clone().map_err(io_err("dup"))?;
            child_out = p.slave.try_clone().map_err(io_err("dup"))?;
            child_err = p.slave;
            out_tasks.push(tokio::spawn(pump_pty_out(master.clone(), stdout_sock)));
            if let Some(s) = stdin_sock {
                tokio::spawn(pump_pty_in(s, master.clone(), close_rx));
            }
            pty = Some(master);
        } else {
            child_in = match stdin_sock {
                Some(s) => {
                    let (r, w) = pipe()?;
                    set_nonblocking(&w)?;
                    tokio::spawn(pump_in(s, w, close_rx));
                    r
                }
                None => dev_null(false)?,
            };
            let mut out = |sock: Option<Stream>| -> Result<OwnedFd, ProcessError> {
                match sock {
                    Some(s) => {
                        let (r, w) = pipe()?;
                        set_nonblocking(&r)?;
                        out_tasks.push(tokio::spawn(pump_out(r, s)));
                        Ok(w)
                    }
                    None => dev_null(true),
                }
            };
            child_out = out(stdout_sock)?;
            child_err = out(stderr_sock)?;
        }
        tokio::spawn(async move {
            for t in out_tasks {
                let _ = t.await;
            }
            let _ = io_tx.send(true);
        });

        let (ours, theirs) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(nix_err("socketpair"))?;
        let theirs_raw = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new(&self.cfg.self_exe);
        cmd.arg(SETUP_ARG)
            .env_clear()
            .stdin(Stdio::from(child_in))
            .stdout(Stdio::from(child_out))
            .stderr(Stdio::from(child_err));
        // SAFETY: the closure only calls dup2/fcntl/personality, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // The helper is always vminitd at the same addresses, so QEMU's TCG reuses the
                // code it translated for the last helper instead of translating it again; the
                // helper restores address randomization before it execs the container's
                // program.
                if libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if theirs_raw == CONTROL_FD {
                    if libc::fcntl(CONTROL_FD, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(theirs_raw, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let helper = cmd
            .spawn()
            .map_err(io_err(format!("spawning {}", self.cfg.self_exe.display())))?;
        // Dropping the receiver: the reaper just collects the helper's own exit.
        drop(self.reaper.watch(helper.id() as i32));
        drop(helper);
        drop(cmd);
        drop(theirs);

        let plan = serde_json::to_vec(launch).map_err(|e| ProcessError::Setup(e.to_string()))?;
        let (pid, ours) = tokio::task::spawn_blocking(move || handshake(ours, &plan))
            .await
            .map_err(|e| ProcessError::Setup(e.to_string()))??;

        let (exit_tx, exit_rx) = watch::channel(None);
        let rx = self.reaper.watch(pid as i32);
        tokio::spawn(async move {
            let code = rx.await.unwrap_or(255);
            let _ = exit_tx.send(Some((code, now_nanos())));
        });
        Ok(Arc::new(Proc {
            container_id: req.container_id.clone(),
            is_init,
            pid,
            ctrl: Mutex::new(Some(ours)),
            exit: exit_rx,
            io_done: io_rx,
            stdin_close: Mutex::new(Some(close_tx)),
            pty,
        }))
    }

    /// StartProcess: lets the process exec. Returns its pid.
    pub async fn start(&self, id: &str) -> Result<u32, ProcessError> {
        let p = self.get(id)?;
        let ctrl = p
            .ctrl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                ProcessError::Precondition(format!("process {id} was already started"))
            })?;
        let res = tokio::task::spawn_blocking(move || -> Result<(), ProcessError> {
            socket::send(ctrl.as_raw_fd(), &[1], MsgFlags::empty())
                .map_err(nix_err("signalling start"))?;
            let mut buf = vec![0u8; 64 * 1024];
            // End of file: the control socket was closed by a successful exec.
            let n = socket::recv(ctrl.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(nix_err("waiting for exec"))?;
            if n == 0 {
                return Ok(());
            }
            match serde_json::from_slice::<Report>(&buf[..n]) {
                Ok(Report::Failed { message, .. }) => Err(ProcessError::Setup(message)),
                other => Err(ProcessError::Setup(format!("unexpected report {other:?}"))),
            }
        })
        .await
        .map_err(|e| ProcessError::Setup(e.to_string()))?;
        res.map(|()| p.pid)
    }

    /// WaitProcess: the exit code and time, once the output is drained.
    pub async fn wait(&self, id: &str) -> Result<(i32, i64), ProcessError> {
        let p = self.get(id)?;
        let mut exit = p.exit.clone();
        let status = loop {
            if let Some(s) = *exit.borrow_and_update() {
                break s;
            }
            if exit.changed().await.is_err() {
                return Err(ProcessError::Precondition(format!(
                    "process {id} lost its exit status"
                )));
            }
        };
        let mut io = p.io_done.clone();
        let drained = io.wait_for(|d| *d);
        if p.is_init {
            let _ = drained.await;
        } else {
            let _ = tokio::time::timeout(EXEC_DRAIN_LIMIT, drained).await;
        }
        Ok(status)
    }

    /// KillProcess.
    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), ProcessError> {
        let p = self.get(id)?;
        let sig = nix::sys::signal::Signal::try_from(signal as i32)
            .map_err(|_| ProcessError::Precondition(format!("invalid signal {signal}")))?;
        if all {
            let dir = self
                .lock()
                .containers
                .get(&p.container_id)
                .map(|c| c.cgroup.clone());
            if let Some(dir) = dir {
                for pid in cgroup::pids(&dir) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                }
                return Ok(());
            }
        }
        if p.exit.borrow().is_some() {
            return Err(ProcessError::Precondition(format!(
                "process {id} is not running"
            )));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid as i32), sig)
            .map_err(nix_err(format!("signalling process {id}")))
    }

    /// ResizeProcess.
    pub fn resize(&self, id: &str, rows: u32, cols: u32) -> Result<(), ProcessError> {
        let p = self.get(id)?;
        let pty = p
            .pty
            .as_ref()
            .ok_or_else(|| ProcessError::Precondition(format!("process {id} has no terminal")))?;
        let ws = libc::winsize {
            ws_row: rows as u16,
            ws_col: cols as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on the pty master with a valid winsize.
        let rc = unsafe { libc::ioctl(pty.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(io_err("setting the window size")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// CloseStdin.
    pub fn close_stdin(&self, id: &str) -> Result<(), ProcessError> {
        let p = self.get(id)?;
        if let Some(tx) = p
            .stdin_close
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = tx.send(());
        }
        Ok(())
    }

    /// DeleteProcess. Deleting a container's first process removes the container.
    pub async fn delete(&self, id: &str) -> Result<(), ProcessError> {
        let p = self.get(id)?;
        let started = p.ctrl.lock().unwrap_or_else(|e| e.into_inner()).is_none();
        if p.exit.borrow().is_none() {
            if started {
                return Err(ProcessError::Precondition(format!(
                    "process {id} is running"
                )));
            }
            // Created but never started: it is parked before exec; end it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let mut exit = p.exit.clone();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), exit.wait_for(|e| e.is_some())).await;
        }
        let removed = {
            let mut st = self.lock();
            st.procs.remove(id);
            if p.is_init {
                st.procs.retain(|_, q| q.container_id != p.container_id);
                st.containers.remove(&p.container_id)
            } else {
                None
            }
        };
        if let Some(c) = removed {
            let dir = c.cgroup.clone();
            tokio::task::spawn_blocking(move || cgroup::destroy(&dir))
                .await
                .map_err(|e| ProcessError::Setup(e.to_string()))??;
        }
        Ok(())
    }

    /// The pid (in the guest) of a container's first process, whose mount namespace is the
    /// container's.
    pub fn init_pid_of(&self, container_id: &str) -> Result<u32, ProcessError> {
        self.lock()
            .containers
            .get(container_id)
            .map(|c| c.init_pid)
            .ok_or_else(|| ProcessError::NoContainer(container_id.to_string()))
    }

    /// Opens a stream to a host port the way stdio streams are dialed (retrying for up to
    /// 10 s).
    pub async fn dial_host(&self, port: u32) -> Result<Box<dyn HostStream>, ProcessError> {
        dial(&self.cfg.dialer, port).await
    }

    /// The cgroup directory of a container.
    pub fn cgroup_of(&self, container_id: &str) -> Result<PathBuf, ProcessError> {
        self.lock()
            .containers
            .get(container_id)
            .map(|c| c.cgroup.clone())
            .ok_or_else(|| ProcessError::NoContainer(container_id.to_string()))
    }

    /// Waits until every tracked process exited or `limit` passed.
    pub async fn wait_all(&self, limit: Duration) {
        let procs: Vec<Arc<Proc>> = self.lock().procs.values().cloned().collect();
        let all = async {
            for p in procs {
                let mut e = p.exit.clone();
                let _ = e.wait_for(|e| e.is_some()).await;
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
    }
}

/// Sends the plan and waits for the pid and Ready (or a failure).
fn handshake(ctrl: OwnedFd, plan: &[u8]) -> Result<(u32, OwnedFd), ProcessError> {
    let tv = nix::sys::time::TimeVal::new(SETUP_TIMEOUT.as_secs() as i64, 0);
    socket::setsockopt(&ctrl, socket::sockopt::ReceiveTimeout, &tv)
        .map_err(nix_err("setsockopt"))?;
    // The plan travels as one datagram: make room for specs with a large environment (the
    // default limit is about 200 KiB). Root may exceed wmem_max.
    let _ = socket::setsockopt(&ctrl, socket::sockopt::SndBufForce, &(16 << 20));
    socket::send(ctrl.as_raw_fd(), plan, MsgFlags::empty())
        .map_err(nix_err("sending the launch plan"))?;
    let mut pid = None;
    let mut ready = false;
    let mut buf = vec![0u8; 64 * 1024];
    while pid.is_none() || !ready {
        let n = socket::recv(ctrl.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(nix_err("waiting for container setup"))?;
        if n == 0 {
            return Err(ProcessError::Setup(
                "setup helper exited without a report".into(),
            ));
        }
        match serde_json::from_slice::<Report>(&buf[..n]) {
            Ok(Report::Pid(p)) => pid = Some(p),
            Ok(Report::Ready) => ready = true,
            Ok(Report::Failed { message, .. }) => return Err(ProcessError::Setup(message)),
            Err(e) => return Err(ProcessError::Setup(format!("bad report: {e}"))),
        }
    }
    // Receiving blocks until start from here on; no timeout.
    let zero = nix::sys::time::TimeVal::new(0, 0);
    socket::setsockopt(&ctrl, socket::sockopt::ReceiveTimeout, &zero)
        .map_err(nix_err("setsockopt"))?;
    // `pid` is Some here: the loop only ends once both reports arrived.
    Ok((pid.unwrap_or_default(), ctrl))
}

fn console_size(spec_json: &[u8]) -> Option<nix::pty::Winsize> {
    let spec = spec::parse(spec_json).ok()?;
    let b = spec.process().as_ref()?.console_size()?;
    Some(nix::pty::Winsize {
        ws_row: b.height() as u16,
        ws_col: b.width() as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("abc-123_x.y"));
        assert!(!valid_id(""));
        assert!(!valid_id("../x"));
        assert!(!valid_id(".hidden"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(129)));
    }

    #[test]
    fn console_size_comes_from_the_spec() {
        let ws = console_size(br#"{"process":{"user":{"uid":0,"gid":0},"cwd":"/","consoleSize":{"height":40,"width":120}}}"#).unwrap();
        assert_eq!((ws.ws_row, ws.ws_col), (40, 120));
        assert!(console_size(b"{}").is_none());
    }
}
