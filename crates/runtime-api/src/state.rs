//! `<bundle>/state.json`: where the container is in its life, rewritten atomically at every
//! change so that the daemon (or a restarted daemon) can read it without asking the runtime.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The VM is up and the init process is created, not started.
    Created,
    /// The init process runs.
    Running,
    /// The init process exited, or the container failed to boot or start.
    Stopped,
}

/// The content of state.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The container's id.
    pub id: String,
    /// Its status.
    pub status: Status,
    /// The runtime process's pid on the host.
    pub runtime_pid: u32,
    /// The init process's pid in the guest, once started.
    pub init_pid: Option<u32>,
    /// RFC 3339 time the init process started.
    pub started_at: Option<String>,
    /// RFC 3339 time it exited (or the failure was recorded).
    pub finished_at: Option<String>,
    /// Its exit code: as a shell reports it (128 + signal when killed), or Docker's codes for
    /// failures: 125 the runtime failed, 126 the program cannot be executed, 127 not found.
    pub exit_code: Option<i32>,
    /// One line saying why the container failed to boot or start.
    pub error: Option<String>,
    /// Host pids of the VMM's processes (QEMU and its helpers). They die with the runtime
    /// only when it ends normally: a daemon finding the runtime dead kills these.
    #[serde(default)]
    pub vm_pids: Vec<u32>,
}

/// Exit code of a container the runtime could not boot or set up (Docker's 125).
pub const EXIT_RUNTIME_FAILED: i32 = 125;
/// Exit code of a program that exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit code of a program that was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

impl State {
    /// A fresh state for container `id` run by this process.
    pub fn new(id: &str) -> Self {
        State {
            id: id.to_string(),
            status: Status::Created,
            runtime_pid: std::process::id(),
            init_pid: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            vm_pids: Vec::new(),
        }
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> std::io::Result<State> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Writes it atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        statefs::write_atomic(path, &bytes)
    }
}

/// Collapses an error message onto one line (state.json's `error` is one line).
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_lowercase_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = State::new("c1");
        s.status = Status::Stopped;
        s.exit_code = Some(127);
        s.error = Some(one_line("exec: \"nope\":\n executable file not found"));
        s.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"status\": \"stopped\""), "{text}");
        assert!(
            text.contains("exec: \\\"nope\\\": executable file not found"),
            "{text}"
        );
        assert_eq!(State::load(&path).unwrap(), s);
    }
}
