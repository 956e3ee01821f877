//! Drives an attached process (`run`, `start -a`, `attach`, `exec`) over the daemon's
//! bidirectional stdio stream: stdin, window changes and signals go up; output and the exit
//! code come down. With a terminal, stdin is scanned for the detach sequence
//! (`--detach-keys`, Docker's `ctrl-p,ctrl-q` by default): reading it ends the session and
//! leaves the process running. Without one, stdin goes through byte for byte, as Docker's.

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
#[derive(Debug, Clone, Default)]
pub struct StdioOptions {
    /// Forward stdin.
    pub stdin: bool,
    /// The process has a terminal: put ours in raw mode and forward window changes.
    pub tty: bool,
    /// Return as soon as the process started (`exec -d`).
    pub detach: bool,
    /// The sequence on stdin that detaches when `tty` (None: Docker's default).
    pub detach_keys: Option<spec::DetachKeys>,
}

/// `--detach-keys`, checked before anything is created or attached.
pub fn detach_keys(text: Option<&str>) -> Result<Option<spec::DetachKeys>, CliError> {
    text.map(str::parse).transpose().map_err(CliError::usage)
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The process exited with this code (or, for `exec -d`, started: 0).
    Exit(i32),
    /// The user typed the detach sequence: the process runs on.
    Detached,
}

impl Ended {
    /// The CLI's exit code: the process's, or 0 after a detach (as Docker's).
    pub fn code(self) -> i32 {
        match self {
            Ended::Exit(code) => code,
            Ended::Detached => 0,
        }
    }
}

/// Attaches to container `id` (`start`: starting it first, as `run` and `start -a` do) and
/// drives the session to its end; the one path of `run`, `start -a` and `attach`.
pub async fn attach(
    client: &api::Client,
    id: String,
    start: bool,
    options: StdioOptions,
) -> Result<Ended, CliError> {
    let open = Request::Attach(v1::AttachOpen {
        id,
        stdin: options.stdin,
        start,
        size: if options.tty {
            local_terminal_size()
        } else {
            None
        },
    });
    drive(client, Rpc::Attach, open, options).await
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
/// process's exit code (0 for a detached exec), or that the user detached.
pub async fn drive(
    client: &api::Client,
    rpc: Rpc,
    open: Request,
    options: StdioOptions,
) -> Result<Ended, CliError> {
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
                    Ok(Ended::Exit(code))
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
    // Fires when stdin carried the detach sequence.
    let (detach_tx, mut detached) = mpsc::channel::<()>(1);
    if options.stdin && !options.detach {
        // Docker scans only a terminal's input: piped data may hold any byte.
        let scanner = options
            .tty
            .then(|| options.detach_keys.unwrap_or_default().scanner());
        tasks.push(tokio::spawn(forward_stdin(tx.clone(), scanner, detach_tx)));
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
                break Ok(Ended::Exit(EXIT_GAVE_UP));
            }
            Some(()) = detached.recv() => break Ok(Ended::Detached),
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
                        break Ok(Ended::Exit(code));
                    }
                    _ => break Err(error.into()),
                }
            }
        };
        match message.response {
            Some(Response::Started(_)) if options.detach => break Ok(Ended::Exit(0)),
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
                Some(Output::ExitCode(code)) => break Ok(Ended::Exit(code)),
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

/// Forwards stdin until it ends (then closes the process's stdin) or carries the detach
/// sequence (then fires `detach` and leaves the process's stdin open, as Docker does).
async fn forward_stdin(
    tx: mpsc::Sender<v1::StdioRequest>,
    mut scanner: Option<spec::DetachScanner>,
    detach: mpsc::Sender<()>,
) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let held = scanner.as_mut().map(|s| s.finish()).unwrap_or_default();
                if !held.is_empty() && tx.send(input(StdioInput::stdin(held))).await.is_err() {
                    return;
                }
                let _ = tx.send(input(StdioInput::close_stdin())).await;
                return;
            }
            Ok(n) => n,
        };
        let scanned = match scanner.as_mut() {
            Some(s) => s.feed(&buf[..n]),
            None => spec::Scanned {
                forward: buf[..n].to_vec(),
                detach: false,
            },
        };
        if !scanned.forward.is_empty()
            && tx
                .send(input(StdioInput::stdin(scanned.forward)))
                .await
                .is_err()
        {
            return;
        }
        if scanned.detach {
            let _ = detach.send(()).await;
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
