//! Process streams over vsock: host listeners, accepting the guest's connections, and the init output pump.

use super::*;

/// The streams of one process, accepted from the guest.
pub(super) struct Stdio {
    pub(super) stdin: Option<VsockStream>,
    pub(super) stdout: Option<VsockStream>,
    pub(super) stderr: Option<VsockStream>,
}

/// Host listeners for one process's streams, before the guest dials them.
pub(super) struct StdioListeners {
    pub(super) ports: pb::StdioPorts,
    pub(super) stdin: Option<VsockListener>,
    pub(super) stdout: Option<VsockListener>,
    pub(super) stderr: Option<VsockListener>,
}

pub(super) async fn accept(
    listener: Option<VsockListener>,
    what: &str,
) -> Result<Option<VsockStream>, ContainerError> {
    let Some(mut l) = listener else {
        return Ok(None);
    };
    match tokio::time::timeout(DIAL_TIMEOUT, l.accept()).await {
        Ok(Ok(s)) => Ok(Some(s)),
        Ok(Err(e)) => Err(io_err(format!("accepting the guest's {what} stream"))(e)),
        Err(_) => Err(ContainerError::Io {
            op: format!("waiting for the guest to connect {what}"),
            source: std::io::Error::from(std::io::ErrorKind::TimedOut),
        }),
    }
}

impl StdioListeners {
    pub(super) async fn accept_all(self) -> Result<Stdio, ContainerError> {
        Ok(Stdio {
            stdin: accept(self.stdin, "stdin").await?,
            stdout: accept(self.stdout, "stdout").await?,
            stderr: accept(self.stderr, "stderr").await?,
        })
    }
}

impl Container {
    pub(super) fn port(&self) -> u32 {
        self.next_port.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) async fn listen(
        &self,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<StdioListeners, ContainerError> {
        let mut ports = pb::StdioPorts::default();
        let open = |want: bool, port: &mut u32| {
            if want {
                *port = self.port();
            }
            want.then_some(*port)
        };
        let stdin_port = open(stdin, &mut ports.stdin_port);
        let stdout_port = open(stdout, &mut ports.stdout_port);
        let stderr_port = open(stderr, &mut ports.stderr_port);
        let listen = |p: Option<u32>| async move {
            match p {
                Some(p) => self.vm.listen(p).await.map(Some),
                None => Ok(None),
            }
        };
        Ok(StdioListeners {
            ports,
            stdin: listen(stdin_port).await?,
            stdout: listen(stdout_port).await?,
            stderr: listen(stderr_port).await?,
        })
    }
}

pub(super) async fn pump_init_output(
    mut stream: VsockStream,
    kind: Stream,
    log: Arc<StdioLog>,
    output: broadcast::Sender<Output>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut carry = Utf8Carry::default();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("reading {kind:?}: {e}");
                break;
            }
        };
        let chunk = &buf[..n];
        let data = carry.take(chunk);
        if !data.is_empty()
            && let Err(e) = log.write(kind, &data)
        {
            tracing::error!("writing stdio.log: {e}");
        }
        let msg = match kind {
            Stream::Stdout => Output::Stdout(chunk.to_vec()),
            Stream::Stderr => Output::Stderr(chunk.to_vec()),
        };
        // No receiver is fine: nobody is attached.
        let _ = output.send(msg);
    }
    let rest = carry.finish();
    if !rest.is_empty()
        && let Err(e) = log.write(kind, &rest)
    {
        tracing::error!("writing stdio.log: {e}");
    }
}
