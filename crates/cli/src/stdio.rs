//! Drives an attached process (`run`, `start -a`, `exec`) over the daemon's bidirectional
//! stdio stream: stdin, window changes and signals go up; output and the exit code come
//! down.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use api::v1::{self, stdio_request::Request, stdio_response::Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wire::v1::StdioInput;
use wire::v1::stdio_output::Output;

use crate::error::CliError;
use crate::terminal::{RawMode, WindowChanges, window_size};

/// How the local side takes part.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdioOptions {
    /// Forward stdin.
    pub stdin: bool,
    /// The process has a terminal: put ours in raw mode and forward window changes.
    pub tty: bool,
    /// Return as soon as the process started (`exec -d`).
    pub detach: bool,
}

/// The size of the terminal on our stdout, if it is one.
pub fn local_terminal_size() -> Option<wire::v1::TerminalSize> {
    window_size(std::io::stdout().as_fd()).map(Into::into)
}

/// Which rpc carries the stream.
pub enum Rpc {
    /// Containers.Attach.
    Attach,
    /// Containers.Exec.
    Exec,
}

/// Opens the stream with `open` as its first message and runs it to the end. Returns the
/// process's exit code (0 for a detached exec).
pub async fn drive(
    client: &api::Client,
    rpc: Rpc,
    open: Request,
    options: StdioOptions,
) -> Result<i32, CliError> {
    let (tx, rx) = mpsc::channel::<v1::StdioRequest>(32);
    tx.send(v1::StdioRequest {
        request: Some(open),
    })
    .await
    .map_err(|_| CliError::Daemon("stdio stream closed before it opened".into()))?;
    let mut containers = client.containers();
    let request = ReceiverStream::new(rx);
    let response = match rpc {
        Rpc::Attach => containers.attach(request).await,
        Rpc::Exec => containers.exec(request).await,
    };
    let response = match response {
        Ok(response) => response,
        Err(status) => {
            let error = api::ApiError::from(status);
            return match launch_failure_code(&error.message) {
                Some(code) => {
                    eprintln!("container: {error}");
                    Ok(code)
                }
                None => Err(error.into()),
            };
        }
    };
    let mut output = response.into_inner();

    // Raw mode only when both ends are terminals; restored when `_raw` drops.
    let stdin_handle = std::io::stdin();
    let _raw = if options.tty && stdin_handle.is_terminal() && std::io::stdout().is_terminal() {
        Some(
            RawMode::enable(stdin_handle.as_fd())
                .map_err(|e| CliError::io("setting the terminal to raw mode", e))?,
        )
    } else {
        None
    };

    let mut tasks = Vec::new();
    // Fires when the user insists (three Ctrl-C) on leaving a session that does not end.
    let (give_up_tx, mut give_up) = mpsc::channel::<()>(1);
    if options.stdin && !options.detach {
        tasks.push(tokio::spawn(forward_stdin(tx.clone())));
    }
    if options.tty && !options.detach {
        tasks.push(tokio::spawn(forward_window_changes(tx.clone())));
    } else if !options.detach {
        // Without a terminal, Ctrl-C and TERM are meant for the container (Docker's
        // --sig-proxy).
        tasks.push(tokio::spawn(forward_signals(tx.clone(), give_up_tx)));
    }
    drop(tx);

    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut started = false;
    let result = loop {
        let next = tokio::select! {
            next = output.message() => next,
            Some(()) = give_up.recv() => {
                eprintln!("container: interrupted three times: leaving the container running");
                break Ok(EXIT_GAVE_UP);
            }
        };
        let message = match next {
            Ok(Some(m)) => m,
            Ok(None) => {
                break Err(CliError::Daemon(
                    "the daemon closed the stream before the process exited".into(),
                ));
            }
            Err(status) => {
                let error = api::ApiError::from(status);
                match (started, launch_failure_code(&error.message)) {
                    (false, Some(code)) => {
                        eprintln!("container: {error}");
                        break Ok(code);
                    }
                    _ => break Err(error.into()),
                }
            }
        };
        match message.response {
            Some(Response::Started(_)) if options.detach => break Ok(0),
            Some(Response::Started(_)) => started = true,
            None => {}
            Some(Response::Output(frame)) => match frame.output {
                None => {}
                Some(Output::Stdout(bytes)) => {
                    if let Err(e) = write_all_flush(&mut stdout, &bytes).await {
                        break Err(CliError::io("writing stdout", e));
                    }
                }
                Some(Output::Stderr(bytes)) => {
                    if let Err(e) = write_all_flush(&mut stderr, &bytes).await {
                        break Err(CliError::io("writing stderr", e));
                    }
                }
                Some(Output::ExitCode(code)) => break Ok(code),
            },
        }
    };
    for task in tasks {
        task.abort();
    }
    result
}

/// Docker's exit code for a process that could not be launched, read from the daemon's
/// message when it reports the failure as an error instead of an `Exit` (the contract asks
/// for `Exit` with 126/127; this keeps the user's exit code right either way): 127 when the
/// program was not found, 126 when it could not be executed.
pub fn launch_failure_code(message: &str) -> Option<i32> {
    let m = message.to_ascii_lowercase();
    if m.contains("executable file not found") || m.contains("no such file or directory") {
        Some(crate::error::EXIT_NOT_FOUND)
    } else if m.contains("permission denied") || m.contains("exec format error") {
        Some(crate::error::EXIT_CANNOT_EXECUTE)
    } else {
        None
    }
}

async fn write_all_flush(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    bytes: &[u8],
) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// A frame for the daemon.
fn input(frame: StdioInput) -> v1::StdioRequest {
    v1::StdioRequest {
        request: Some(Request::Input(frame)),
    }
}

async fn forward_stdin(tx: mpsc::Sender<v1::StdioRequest>) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (frame, done) = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => (StdioInput::close_stdin(), true),
            Ok(n) => (StdioInput::stdin(&buf[..n]), false),
        };
        if tx.send(input(frame)).await.is_err() || done {
            return;
        }
    }
}

async fn forward_window_changes(tx: mpsc::Sender<v1::StdioRequest>) {
    let Ok(mut changes) = WindowChanges::new() else {
        return;
    };
    while let Some(size) = changes.next(std::io::stdout().as_fd()).await {
        if let Some(size) = size {
            let frame = StdioInput::resize(u32::from(size.rows), u32::from(size.cols));
            if tx.send(input(frame)).await.is_err() {
                return;
            }
        }
    }
}

/// The exit code after three Ctrl-C in a session without a terminal (Apple's).
pub const EXIT_GAVE_UP: i32 = 1;

/// Forwards the signals a user sends to the CLI (Docker's sig-proxy); the third SIGINT
/// means "let me out" and fires `give_up`.
async fn forward_signals(tx: mpsc::Sender<v1::StdioRequest>, give_up: mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        (SignalKind::interrupt(), spec::Signal::INT),
        (SignalKind::terminate(), spec::Signal::TERM),
        (SignalKind::hangup(), spec::Signal::HUP),
        (SignalKind::quit(), spec::Signal::QUIT),
        (SignalKind::user_defined1(), spec::Signal::USR1),
        (SignalKind::user_defined2(), spec::Signal::USR2),
    ];
    /// Stops the per-signal listeners when forwarding ends (also when it is aborted).
    struct Listeners(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for Listeners {
        fn drop(&mut self) {
            for listener in &self.0 {
                listener.abort();
            }
        }
    }
    let (numbers_tx, mut numbers) = mpsc::channel::<i32>(8);
    let mut listeners = Listeners(Vec::new());
    for (kind, forwarded) in kinds {
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        let numbers_tx = numbers_tx.clone();
        listeners.0.push(tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if numbers_tx.send(forwarded.number()).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(numbers_tx);
    let mut interrupts = 0;
    while let Some(number) = numbers.recv().await {
        if number == spec::Signal::INT.number() {
            interrupts += 1;
            if interrupts >= 3 {
                let _ = give_up.send(()).await;
                break;
            }
        }
        if tx.send(input(StdioInput::signal(number))).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_failures_map_to_dockers_codes() {
        assert_eq!(
            launch_failure_code(
                "container setup failed: exec: \"nope\": executable file not found in $PATH"
            ),
            Some(127)
        );
        assert_eq!(
            launch_failure_code("exec /etc/passwd: permission denied"),
            Some(126)
        );
        assert_eq!(launch_failure_code("container web is not running"), None);
    }
}
