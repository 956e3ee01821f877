//! Backend-neutral vsock endpoints: a connected byte stream and a listener that yields the
//! streams a guest opens towards a host port.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::{BoxFuture, VmError};

/// Anything a backend can hand out as a vsock connection.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A connected vsock stream between the host and a guest port, whatever the backend carries
/// it over (a Unix socket to a vhost-user daemon, AF_VSOCK, a Virtualization.framework fd).
pub struct VsockStream {
    inner: Box<dyn Stream>,
}

impl VsockStream {
    /// Wraps a backend's connected stream.
    pub fn new<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(stream: S) -> Self {
        Self {
            inner: Box::new(stream),
        }
    }
}

impl std::fmt::Debug for VsockStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VsockStream")
    }
}

impl AsyncRead for VsockStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for VsockStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A cloneable, `'static` handle that dials one guest port of one VM again and again: what a
/// reconnecting client (e.g. a gRPC channel) needs as its connector.
#[derive(Clone)]
pub struct VsockConnector {
    port: u32,
    dial: Arc<dyn Fn() -> BoxFuture<'static, Result<VsockStream, VmError>> + Send + Sync>,
}

impl std::fmt::Debug for VsockConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsockConnector")
            .field("port", &self.port)
            .finish()
    }
}

impl VsockConnector {
    /// Builds a connector for `port` from a backend's dial function.
    pub fn new(
        port: u32,
        dial: impl Fn() -> BoxFuture<'static, Result<VsockStream, VmError>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            port,
            dial: Arc::new(dial),
        }
    }

    /// The guest port this connector dials.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Opens one new stream to the guest port.
    pub async fn connect(&self) -> Result<VsockStream, VmError> {
        (self.dial)().await
    }
}

/// Listens on one host vsock port of one VM: yields each stream the guest opens to it.
///
/// Backends feed accepted streams through a channel, so the listener is the same type
/// everywhere. Dropping it stops listening and releases the port.
pub struct VsockListener {
    port: u32,
    incoming: mpsc::Receiver<io::Result<VsockStream>>,
    // Whatever the backend must keep alive while listening (an accept task, a socket file);
    // its Drop releases the port.
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for VsockListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsockListener")
            .field("port", &self.port)
            .finish()
    }
}

impl VsockListener {
    /// Builds a listener for `port` from the receiving end of a backend's accept loop and a
    /// guard whose drop stops that loop.
    pub fn new(
        port: u32,
        incoming: mpsc::Receiver<io::Result<VsockStream>>,
        guard: Box<dyn Send + Sync>,
    ) -> Self {
        Self {
            port,
            incoming,
            _guard: guard,
        }
    }

    /// The host port this listener owns.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Waits for the guest's next connection. Fails with `NotConnected` once the VM is gone.
    pub async fn accept(&mut self) -> io::Result<VsockStream> {
        match self.incoming.recv().await {
            Some(result) => result,
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("vsock listener on port {} has closed", self.port),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn listener_yields_streams_then_reports_closure() {
        let (tx, rx) = mpsc::channel(4);
        let mut listener = VsockListener::new(7, rx, Box::new(()));
        let (a, mut b) = tokio::io::duplex(64);
        tx.send(Ok(VsockStream::new(a))).await.unwrap();
        drop(tx);
        let mut s = listener.accept().await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        let err = listener.accept().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        assert_eq!(err.to_string(), "vsock listener on port 7 has closed");
    }
}
