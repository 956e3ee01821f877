//! Hybrid vsock: how the host reaches guest vsock ports through vhost-device-vsock's Unix
//! sockets (the Firecracker convention).
//!
//! - Host to guest: connect to the daemon's `uds-path`, send `CONNECT <port>\n`, read
//!   `OK <n>\n`; the socket then carries the stream. While nothing in the guest listens, the
//!   daemon closes the socket, so dials retry every [`RETRY_INTERVAL`].
//! - Guest to host port P: the daemon connects to the Unix socket `<uds-path>_P`, on which the
//!   host listens.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The pause between two dial attempts while the guest is not listening yet. A refused
/// attempt costs the guest one reset packet, so polling this often is cheap, and it bounds
/// how late the host notices that the agent has started listening.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// The Unix socket on which the host receives guest connections to host `port`.
pub fn listen_path(uds_path: &Path, port: u32) -> PathBuf {
    let mut path = uds_path.as_os_str().to_owned();
    path.push(format!("_{port}"));
    PathBuf::from(path)
}

/// How long an abandoned handshake is kept open in the background (see [`dial_once`]).
pub const ABANDONED_HANDSHAKE_WAIT: Duration = Duration::from_secs(120);

/// One dial attempt: connect and complete the `CONNECT` handshake before `deadline`.
///
/// A handshake still pending at the deadline is not closed: vhost-device-vsock 0.3 panics
/// (killing the VM's vsock for good) when the guest accepts a connection whose host end is
/// already gone. The socket is handed to a background task that waits for the daemon's answer
/// (or [`ABANDONED_HANDSHAKE_WAIT`]) and only then closes it.
pub async fn dial_once(uds_path: &Path, port: u32, deadline: Instant) -> io::Result<UnixStream> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut stream = match tokio::time::timeout(remaining, UnixStream::connect(uds_path)).await {
        Ok(stream) => stream?,
        Err(_) => return Err(timed_out()),
    };
    if let Err(e) = stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await
    {
        return Err(if is_refusal(&e) {
            not_listening(port)
        } else {
            e
        });
    }
    let mut reply = Vec::with_capacity(16);
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, read_reply(&mut stream, &mut reply, port)).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            tokio::spawn(async move {
                let wait = read_reply(&mut stream, &mut reply, port);
                let _ = tokio::time::timeout(ABANDONED_HANDSHAKE_WAIT, wait).await;
            });
            Err(timed_out())
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no answer to CONNECT before the deadline",
    )
}

fn not_listening(port: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("nothing in the guest listens on vsock port {port}"),
    )
}

// The daemon refuses by closing the socket; depending on timing the host sees that as end of
// file, a reset or a broken pipe.
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Reads the daemon's `OK <n>\n` into `line` a byte at a time (whatever follows the newline
/// belongs to the stream). Cancel-safe: the bytes read so far stay in `line`.
async fn read_reply(stream: &mut UnixStream, line: &mut Vec<u8>, port: u32) -> io::Result<()> {
    loop {
        let byte = match stream.read_u8().await {
            Ok(b) => b,
            Err(e) if is_refusal(&e) => return Err(not_listening(port)),
            Err(e) => return Err(e),
        };
        if byte == b'\n' {
            break;
        }
        line.push(byte);
        if line.len() > 64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "vsock daemon sent an over-long handshake reply",
            ));
        }
    }
    let reply = String::from_utf8_lossy(line);
    if reply.starts_with("OK ") {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("vsock daemon answered CONNECT {port} with {reply:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    // A stand-in daemon speaking the real handshake: the dial must deliver exactly the bytes
    // after "OK <n>\n" to the caller.
    #[tokio::test]
    async fn handshake_keeps_the_bytes_after_the_reply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 13];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"CONNECT 1024\n");
            s.write_all(b"OK 1073741824\nhello").await.unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stream = dial_once(&path, 1024, deadline).await.unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_reply_means_not_listening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 10];
            s.read_exact(&mut buf).await.unwrap();
            drop(s);
        });
        let err = dial_once(&path, 5, Instant::now() + Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "nothing in the guest listens on vsock port 5"
        );
    }

    // The daemon answers after the dial gave up: its answer must still find an open socket,
    // which is closed only afterwards.
    #[tokio::test]
    async fn an_abandoned_handshake_stays_open_until_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 10];
            s.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.write_all(b"OK 7\n").await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let err = dial_once(&path, 7, Instant::now() + Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let rest = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the abandoned socket was never closed")
            .unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn listen_paths_append_the_port() {
        assert_eq!(
            listen_path(Path::new("/run/x/vsock"), 268435456),
            PathBuf::from("/run/x/vsock_268435456")
        );
    }
}
