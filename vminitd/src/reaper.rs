//! Reaping: vminitd is PID 1 (and a child subreaper elsewhere), so every orphan of every
//! container ends up as its child. One SIGCHLD loop collects every exit; processes vminitd
//! tracks get their status, the rest are simply reaped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How a process ended, as a shell reports it: the exit code, or 128 + the signal number.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<i32, oneshot::Sender<i32>>,
    /// Exits of pids nobody was waiting for yet (a pid reported after its process died).
    unclaimed: HashMap<i32, i32>,
}

/// The reaper's shared table.
#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<Mutex<Inner>>,
}

impl Reaper {
    /// Starts the SIGCHLD loop on the current tokio runtime.
    pub fn start() -> std::io::Result<Self> {
        let reaper = Reaper::default();
        let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            loop {
                r.reap_all();
                if sig.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another task panicked mid-update; the maps stay usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Collects every exited child without blocking.
    pub fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let (Some(pid), Some(code)) = (status.pid(), exit_code(status)) else {
                        continue;
                    };
                    let mut inner = self.lock();
                    match inner.waiting.remove(&pid.as_raw()) {
                        Some(tx) => {
                            let _ = tx.send(code);
                        }
                        None => {
                            // Bounded: old unclaimed exits are of processes nobody asks about.
                            if inner.unclaimed.len() > 4096 {
                                inner.unclaimed.clear();
                            }
                            inner.unclaimed.insert(pid.as_raw(), code);
                        }
                    }
                }
            }
        }
    }

    /// Registers interest in `pid`'s exit.
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        match inner.unclaimed.remove(&pid) {
            Some(code) => {
                let _ = tx.send(code);
            }
            None => {
                inner.waiting.insert(pid, tx);
            }
        }
        rx
    }

    /// Forgets an exit reported for `pid` before anyone asked (the setup helper's own exit).
    pub fn forget(&self, pid: i32) {
        self.lock().unclaimed.remove(&pid);
    }

    /// Number of processes still being waited for.
    pub fn tracked(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn exit_codes_follow_shell_conventions() {
        let p = Pid::from_raw(5);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGTERM, true)),
            Some(143)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[tokio::test]
    async fn a_child_exit_reaches_its_watcher() {
        let reaper = Reaper::start().unwrap();
        // Reaped by the reaper, not by std: that is what is under test.
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", "exit 7"])
            .spawn()
            .unwrap();
        let rx = reaper.watch(child.id() as i32);
        let code = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, 7);
    }
}
