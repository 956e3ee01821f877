//! Spawning the VM's children so that they die with this process, even if it crashes.
//!
//! Each child asks the kernel for SIGKILL when its parent goes (`PR_SET_PDEATHSIG`). The
//! kernel's "parent" there is the *thread* that forked, not the process: a child forked from
//! a tokio worker or blocking-pool thread would be killed whenever that thread retires. So
//! every fork happens on one dedicated thread that lives as long as the process.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

struct Request {
    cmd: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

static SPAWNER: OnceLock<Result<std_mpsc::Sender<Request>, String>> = OnceLock::new();

fn spawner() -> io::Result<&'static std_mpsc::Sender<Request>> {
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("vmm-qemu-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop (and the thread) never ends.
                while let Ok(mut request) = rx.recv() {
                    let _runtime = request.runtime.enter();
                    let _ = request.reply.send(request.cmd.spawn());
                }
            })
            .map(|_| tx)
            .map_err(|e| format!("starting the spawner thread: {e}"))
    });
    spawner.as_ref().map_err(|e| io::Error::other(e.clone()))
}

/// Spawns `cmd` on the spawner thread, with SIGKILL as its parent-death signal.
pub async fn spawn(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec; it only calls prctl(2) and
    // getppid(2), both async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if std::os::unix::process::parent_id() != parent {
                return Err(io::Error::other("parent died during spawn"));
            }
            Ok(())
        });
    }
    let (reply, answer) = oneshot::channel();
    let request = Request {
        cmd,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    spawner()?
        .send(request)
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}
