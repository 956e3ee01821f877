//! The wire format of socket relay streams (ServeSocket, DialSocket): what the host's runtime
//! and vminitd say over the vsock connection that carries one relayed Unix socket connection.
//!
//! A plain byte copy is not enough: the vsock transport of the Linux backend
//! (vhost-device-vsock) cannot carry a half-close, so a client that writes a request and
//! shuts down its write side would never be seen to finish. Each direction is therefore a
//! sequence of frames, a big-endian `u32` length and that many bytes, where a zero length
//! means "this side will send nothing more" (the receiver shuts down its local write half).
//! A relay ends when both directions have ended, or when either connection fails.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame sent (the receiver accepts up to [`MAX_FRAME`]).
const CHUNK: usize = 64 << 10;
/// The largest frame accepted.
pub const MAX_FRAME: u32 = 1 << 20;

/// Copies `local` to `remote` as frames, ending with the end frame once `local` ends.
async fn send_frames<R, W>(mut local: R, mut remote: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = local.read(&mut buf).await?;
        remote.write_all(&(n as u32).to_be_bytes()).await?;
        if n == 0 {
            remote.flush().await?;
            return Ok(());
        }
        remote.write_all(&buf[..n]).await?;
        remote.flush().await?;
    }
}

/// Copies frames from `remote` to `local` until the end frame, then shuts `local`'s write
/// half.
async fn receive_frames<R, W>(mut remote: R, mut local: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let mut len = [0u8; 4];
        remote.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len);
        if len == 0 {
            return local.shutdown().await;
        }
        if len > MAX_FRAME {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("relay frame of {len} bytes is larger than {MAX_FRAME}"),
            ));
        }
        let mut left = len as usize;
        while left > 0 {
            let want = left.min(buf.len());
            remote.read_exact(&mut buf[..want]).await?;
            local.write_all(&buf[..want]).await?;
            left -= want;
        }
        local.flush().await?;
    }
}

/// Relays one connection: `local` is the Unix socket connection on this side, `remote` the
/// vsock stream to the other side, which runs this same function. Returns when both
/// directions have ended; the first error ends the relay (and is returned).
pub async fn splice<L, V>(local: L, remote: V) -> std::io::Result<()>
where
    L: AsyncRead + AsyncWrite + Unpin,
    V: AsyncRead + AsyncWrite + Unpin,
{
    let (local_rx, local_tx) = tokio::io::split(local);
    let (remote_rx, remote_tx) = tokio::io::split(remote);
    let up = send_frames(local_rx, remote_tx);
    let down = receive_frames(remote_rx, local_tx);
    tokio::pin!(up, down);
    // Either direction failing ends both: the peer has gone.
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut up, if !up_done => { r?; up_done = true; }
            r = &mut down, if !down_done => { r?; down_done = true; }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn half_close_crosses_a_transport_that_cannot_carry_it() {
        // client <-> [splice A] <-framed-> [splice B] <-> server. The framed link is a
        // duplex whose halves are never shut down, like vhost-device-vsock.
        let (client, a_local) = tokio::io::duplex(16);
        let (b_local, server) = tokio::io::duplex(16);
        let (a_remote, b_remote) = tokio::io::duplex(8);
        let a = tokio::spawn(splice(a_local, a_remote));
        let b = tokio::spawn(splice(b_local, b_remote));
        let server = tokio::spawn(async move {
            let (mut rx, mut tx) = tokio::io::split(server);
            let mut got = Vec::new();
            rx.read_to_end(&mut got).await.unwrap();
            tx.write_all(b"echo:").await.unwrap();
            tx.write_all(&got).await.unwrap();
            tx.shutdown().await.unwrap();
        });
        let (mut rx, mut tx) = tokio::io::split(client);
        let request: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let writer = {
            let request = request.clone();
            tokio::spawn(async move {
                tx.write_all(&request).await.unwrap();
                tx.shutdown().await.unwrap();
            })
        };
        let mut back = Vec::new();
        rx.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        server.await.unwrap();
        assert_eq!(&back[..5], b"echo:");
        assert_eq!(&back[5..], &request[..]);
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused() {
        let (local, _keep) = tokio::io::duplex(16);
        let (remote, mut peer) = tokio::io::duplex(16);
        peer.write_all(&(MAX_FRAME + 1).to_be_bytes())
            .await
            .unwrap();
        let e = splice(local, remote).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
