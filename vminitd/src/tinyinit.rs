//! `--init`: vminitd bind-mounted into the container as a tiny init. It runs the real
//! program as its child, forwards every signal it gets to it, reaps every zombie, and exits
//! with the child's status (128 + signal when the child was killed).

use std::ffi::CString;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, execvp, fork};

/// Runs `args` (after an optional leading "--") under the tiny init. Never returns.
pub fn main(args: &[String]) -> ! {
    let args: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
    let Some(first) = args.first() else {
        eprintln!("vminitd-init: no command given");
        std::process::exit(2)
    };
    let cargs: Vec<CString> = match args.iter().map(|a| CString::new(a.as_str())).collect() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("vminitd-init: argument with a nul byte");
            std::process::exit(2)
        }
    };
    let all = SigSet::all();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None);
    // SAFETY: integer-argument prctl; makes orphans of the program our children to reap.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // SAFETY: single-threaded at this point (nothing has started a thread).
    let child = match unsafe { fork() } {
        Err(e) => {
            eprintln!("vminitd-init: fork: {e}");
            std::process::exit(1)
        }
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            let err = execvp(&cargs[0], &cargs).unwrap_err();
            eprintln!("vminitd-init: exec {first}: {err}");
            // SAFETY: leave the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(if err == nix::Error::ENOENT { 127 } else { 126 }) }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    loop {
        let sig = match all.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => std::process::exit(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                    std::process::exit(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
