//! The little of QEMU's monitor protocol (QMP) the backend needs: learning that QEMU is up,
//! and that the guest driver has started the vsock device.
//!
//! Why the latter: vhost-device-vsock 0.3 loses its device worker (the VM's vsock is dead for
//! good) when a host `CONNECT` reaches it while the guest has not yet set up the vsock queues.
//! So no dial goes out before the device reports `DRIVER_OK`.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

use vmm::VmExit;

/// The QOM path of the vsock device (its `-device ...,id=vsock`).
pub const VSOCK_DEVICE_PATH: &str = "/machine/peripheral/vsock";

/// Polling interval while the guest boots; slower once a boot has taken unusually long.
const FAST_POLL: Duration = Duration::from_millis(20);
const SLOW_POLL: Duration = Duration::from_secs(1);
const FAST_POLL_FOR: Duration = Duration::from_secs(120);
/// A margin after DRIVER_OK for the daemon to process QEMU's last vring messages.
const SETTLE: Duration = Duration::from_millis(20);

/// A QMP session in command mode.
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connects, reads the greeting and enters command mode.
    pub async fn connect(socket: &Path) -> io::Result<Self> {
        let (read, writer) = UnixStream::connect(socket).await?.into_split();
        let mut qmp = Self {
            reader: BufReader::new(read),
            writer,
        };
        let greeting = qmp.read_line().await?;
        if !greeting.contains("\"QMP\"") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected qmp greeting {greeting:?}"),
            ));
        }
        qmp.execute(r#"{"execute":"qmp_capabilities"}"#).await?;
        Ok(qmp)
    }

    async fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "qemu closed its monitor",
            ));
        }
        Ok(line)
    }

    /// Sends one command and returns its `return` line; an `error` answer is an error.
    pub async fn execute(&mut self, command: &str) -> io::Result<String> {
        self.writer.write_all(command.as_bytes()).await?;
        self.writer.write_all(b"\n").await?;
        loop {
            let line = self.read_line().await?;
            // Asynchronous events may arrive between a command and its answer.
            if line.starts_with("{\"return\"") {
                return Ok(line);
            }
            if line.starts_with("{\"error\"") {
                return Err(io::Error::other(line.trim().to_owned()));
            }
        }
    }
}

/// Polls the vsock device's status until the guest driver has set it up, then sets `ready`.
/// Ends early (leaving `ready` false) when the VM exits. If QEMU cannot report the status (an
/// older or newer QEMU without `x-query-virtio-status`), declares the device ready at once.
pub async fn watch_vsock_ready(
    socket: &Path,
    ready: watch::Sender<bool>,
    mut exit: watch::Receiver<Option<VmExit>>,
) {
    let poll = async {
        let mut qmp = match Qmp::connect(socket).await {
            Ok(qmp) => qmp,
            Err(_) => return true,
        };
        let command = format!(
            r#"{{"execute":"x-query-virtio-status","arguments":{{"path":"{VSOCK_DEVICE_PATH}"}}}}"#
        );
        let start = Instant::now();
        loop {
            match qmp.execute(&command).await {
                Ok(answer) if answer.contains("VIRTIO_CONFIG_S_DRIVER_OK") => {
                    tokio::time::sleep(SETTLE).await;
                    return true;
                }
                Ok(_) => {}
                // The command is unknown to this QEMU: fall back to dialing at once.
                Err(e) if e.kind() == io::ErrorKind::Other => return true,
                // The monitor went away: QEMU is exiting.
                Err(_) => return false,
            }
            let interval = if start.elapsed() < FAST_POLL_FOR {
                FAST_POLL
            } else {
                SLOW_POLL
            };
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        is_ready = poll => {
            if is_ready {
                let _ = ready.send(true);
            }
        }
        () = async { let _ = exit.wait_for(Option::is_some).await; } => {}
    }
}
