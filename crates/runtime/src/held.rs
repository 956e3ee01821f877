//! The runtimes the daemon holds by a pipe (`--maintenance`, `--builder`): they serve one
//! gRPC service on a socket of their directory for as long as the daemon keeps their stdin
//! open, or until SIGTERM. The daemon writes nothing down the pipe; its end (the daemon is
//! done, or gone) is the signal to stop.

use std::path::Path;

use tokio::io::AsyncReadExt;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;

/// Listens for the release of a held runtime: installed before the VM boots, so a SIGTERM
/// that comes during the boot ends the service as soon as it starts.
pub(crate) struct Release {
    term: Signal,
}

impl Release {
    /// Installs the SIGTERM handler.
    pub(crate) fn listen() -> std::io::Result<Self> {
        Ok(Release {
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Serves `router` on `socket` (mode 0600) until stdin closes or SIGTERM arrives, then
    /// removes the socket.
    pub(crate) async fn serve(mut self, socket: &Path, router: Router) -> std::io::Result<()> {
        let listener = bind(socket)?;
        tracing::info!("serving {}", socket.display());
        let closed = async {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let ended = async {
            tokio::select! {
                () = closed => {}
                _ = self.term.recv() => {}
            }
        };
        let served = router
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), ended)
            .await;
        let _ = std::fs::remove_file(socket);
        served.map_err(std::io::Error::other)
    }
}

/// Binds a Unix socket of mode 0600, replacing a stale file.
fn bind(socket: &Path) -> std::io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // SAFETY: umask only swaps the process's file mode mask; no memory is involved.
    let old = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(socket);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    bound
}
