//! Docker's wire habits: query parameters and their booleans, hijacked connections
//! (`Upgrade: tcp`, answered `101 UPGRADED`), stdcopy's 8-byte frames, JSON-message streams
//! and the pump between a hijacked connection and a gRPC stdio stream.

use std::convert::Infallible;

use api::v1;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wire::v1::StdioInput;
use wire::v1::StdioOutput;
use wire::v1::stdio_output::Output;

use super::error::{DResult, DockerError};

/// The query parameters of a request, repeated keys kept.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses the query of `uri`.
    pub fn from_uri(uri: &axum::http::Uri) -> DResult<Params> {
        match uri.query() {
            None => Ok(Params::default()),
            Some(_) => axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
                .map(|q| Params(q.0))
                .map_err(|e| DockerError::bad_request(format!("bad query string: {e}"))),
        }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean parameter, false when absent.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(bool_value)
    }

    /// A boolean parameter with a default for when it is absent.
    pub fn flag_or(&self, key: &str, default: bool) -> bool {
        self.get(key).map(bool_value).unwrap_or(default)
    }

    /// An integer parameter; a malformed one is a 400 naming it.
    pub fn int(&self, key: &str) -> DResult<Option<i64>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                DockerError::bad_request(format!(
                    "invalid value for {key}: {v:?} is not an integer"
                ))
            }),
        }
    }
}

/// Docker's booleans (moby's `BoolValue`): false only for "", 0, no, false and none, in any
/// case; docker-py sends `True`/`False`, the CLI `1`, compose v1 `0`/`1`.
pub fn bool_value(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "no" | "false" | "none"
    )
}

/// Parses a JSON body; an empty body is the type's default, a malformed one a 400.
pub fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> DResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| DockerError::bad_request(format!("malformed request body: {e}")))
}

/// A JSON response with status 200.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_default(),
        Err(e) => axum::response::IntoResponse::into_response(DockerError::internal(e.to_string())),
    }
}

/// 204 No Content.
pub fn no_content() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .unwrap_or_default()
}

/// One stdcopy frame: `[stream, 0, 0, 0, len (u32 BE)]` then the bytes. Stream 1 is stdout,
/// 2 stderr.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u8(stream);
    b.put_slice(&[0, 0, 0]);
    b.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    b.put_slice(data);
    b.freeze()
}

/// The sending side of a streamed response body.
#[derive(Debug, Clone)]
pub struct BodyTx(mpsc::Sender<Result<Bytes, Infallible>>);

impl BodyTx {
    /// Sends raw bytes; false once the client has gone.
    pub async fn bytes(&self, b: Bytes) -> bool {
        self.0.send(Ok(b)).await.is_ok()
    }

    /// Sends one JSON message and a newline; false once the client has gone.
    pub async fn json<T: Serialize>(&self, value: &T) -> bool {
        let mut line = serde_json::to_vec(value).unwrap_or_default();
        line.push(b'\n');
        self.bytes(Bytes::from(line)).await
    }

    /// Sends a JSON-message stream's error, in the stream as Docker does (the status is
    /// already 200).
    pub async fn error(&self, message: &str) -> bool {
        self.json(&serde_json::json!({
            "errorDetail": { "message": message },
            "error": message,
        }))
        .await
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

/// A streamed body with `content_type`, and its sender.
pub fn streamed(content_type: &str) -> (BodyTx, Response) {
    let (tx, rx) = mpsc::channel(32);
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default();
    (BodyTx(tx), resp)
}

/// A tar archive the daemon streams (`export`, `save`) as an `application/x-tar` body,
/// chunk by chunk as the chunks arrive.
pub fn tar_body(mut chunks: tonic::Streaming<wire::v1::DataChunk>) -> Response {
    let (tx, resp) = streamed("application/x-tar");
    tokio::spawn(async move {
        while let Ok(Some(c)) = chunks.message().await {
            if !tx.bytes(Bytes::from(c.data)).await {
                break;
            }
        }
    });
    resp
}

/// Whether the client asked to hijack the connection (`Upgrade: tcp`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// The content type of a stdio stream: raw with a terminal, multiplexed frames without.
pub fn stdio_media_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// `101 UPGRADED`: the docker CLI accepts nothing else for a hijack.
pub fn upgrade_response(tty: bool) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONTENT_TYPE, stdio_media_type(tty))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .unwrap_or_default();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    resp
}

/// Which output a stdio pump forwards, and how.
#[derive(Debug, Clone)]
pub struct StdioMode {
    /// Raw bytes (a terminal) instead of stdcopy frames.
    pub tty: bool,
    /// Forward stdout.
    pub stdout: bool,
    /// Forward stderr.
    pub stderr: bool,
    /// Forward the client's input to the process (and close its stdin at the client's EOF).
    pub stdin: bool,
    /// Hold the first output back this long after the upgrade (see [`settle_time`]).
    pub settle: std::time::Duration,
    /// The input sequence that detaches the client and leaves the process running; Docker
    /// scans for it only with a terminal (see [`detach_keys`]).
    pub detach_keys: Option<spec::DetachKeys>,
}

/// The `detachKeys` of an attach or exec with a terminal (Docker's default when absent or
/// empty); None without a terminal, whose input may hold any byte.
pub fn detach_keys(tty: bool, text: Option<&str>) -> DResult<Option<spec::DetachKeys>> {
    if !tty {
        return Ok(None);
    }
    match text.filter(|t| !t.is_empty()) {
        None => Ok(Some(spec::DetachKeys::default())),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|e: spec::DetachKeysError| DockerError::bad_request(e.to_string())),
    }
}

/// How long to hold output back after a hijack. docker-py reads the 101 response through a
/// buffered reader and only then takes the raw socket: output that arrives with the
/// response head is read into that buffer and lost. Its requests carry the User-Agent
/// `docker-sdk-python/...`; every other client gets its output at once.
pub fn settle_time(headers: &HeaderMap) -> std::time::Duration {
    let python = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("docker-sdk-python"));
    if python {
        std::time::Duration::from_millis(200)
    } else {
        std::time::Duration::ZERO
    }
}

/// What ended a stdio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdioEnd {
    /// The process exited with this code.
    Exit(i32),
    /// The daemon's stream failed or ended without an exit.
    Lost(String),
    /// The client sent the detach keys: the process runs on.
    Detached,
}

/// Moves a gRPC stdio stream's output to `io` (framed unless tty) and `io`'s input to the
/// stream, until the process exits; then shuts `io`'s write side so the client sees the end.
/// `first` is output already read from the stream (sent before the rest). `on_end` runs
/// before the client sees the end, so what it records (an exec's exit code) is there when
/// the client asks right after.
pub async fn pump<IO, F>(
    io: IO,
    output: &mut tonic::Streaming<v1::StdioResponse>,
    first: Vec<v1::StdioResponse>,
    input: mpsc::Sender<v1::StdioRequest>,
    mode: StdioMode,
    on_end: F,
) -> StdioEnd
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce(&StdioEnd),
{
    use v1::stdio_request::Request as Rq;
    use v1::stdio_response::Response as Rs;
    if !mode.settle.is_zero() {
        tokio::time::sleep(mode.settle).await;
    }
    let (mut reader, mut writer) = tokio::io::split(io);
    // Fires when the client's input carried the detach keys.
    let (detach_tx, mut detached) = mpsc::channel::<()>(1);
    let upstream = if mode.stdin {
        let input = input.clone();
        let mut scanner = mode.detach_keys.as_ref().map(spec::DetachKeys::scanner);
        Some(tokio::spawn(async move {
            let stdin = |bytes: Vec<u8>| v1::StdioRequest {
                request: Some(Rq::Input(StdioInput::stdin(bytes))),
            };
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let held = scanner.as_mut().map(|s| s.finish()).unwrap_or_default();
                        if !held.is_empty() {
                            let _ = input.send(stdin(held)).await;
                        }
                        let _ = input
                            .send(v1::StdioRequest {
                                request: Some(Rq::Input(StdioInput::close_stdin())),
                            })
                            .await;
                        break;
                    }
                    Ok(n) => {
                        let (forward, detach) = match scanner.as_mut() {
                            Some(s) => {
                                let r = s.feed(&buf[..n]);
                                (r.forward, r.detach)
                            }
                            None => (buf[..n].to_vec(), false),
                        };
                        if !forward.is_empty() && input.send(stdin(forward)).await.is_err() {
                            break;
                        }
                        if detach {
                            // The process keeps its stdin open, as with Docker.
                            let _ = detach_tx.send(()).await;
                            break;
                        }
                    }
                }
            }
        }))
    } else {
        None
    };
    let mut pending = first.into_iter();
    let end = loop {
        let msg = match pending.next() {
            Some(m) => m,
            None => tokio::select! {
                next = output.message() => match next {
                    Ok(Some(m)) => m,
                    Ok(None) => break StdioEnd::Lost("the daemon ended the stream".into()),
                    Err(s) => break StdioEnd::Lost(s.message().to_owned()),
                },
                Some(()) = detached.recv() => break StdioEnd::Detached,
            },
        };
        let (stream, data) = match msg.response {
            Some(Rs::Output(StdioOutput {
                output: Some(Output::Stdout(d)),
            })) => (1u8, d),
            Some(Rs::Output(StdioOutput {
                output: Some(Output::Stderr(d)),
            })) => (2u8, d),
            Some(Rs::Output(StdioOutput {
                output: Some(Output::ExitCode(code)),
            })) => break StdioEnd::Exit(code),
            _ => continue,
        };
        if (stream == 1 && !mode.stdout) || (stream == 2 && !mode.stderr) || data.is_empty() {
            continue;
        }
        let bytes = if mode.tty {
            Bytes::from(data)
        } else {
            frame(stream, &data)
        };
        // A client that went away must not stop the process: keep draining to the exit.
        let _ = writer.write_all(&bytes).await;
    };
    on_end(&end);
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
    if let Some(t) = upstream {
        t.abort();
    }
    drop(input);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_read_as_moby_reads_them() {
        for t in ["1", "true", "True", "yes", "on"] {
            assert!(bool_value(t), "{t}");
        }
        for f in ["", "0", "false", "False", "no", "NONE"] {
            assert!(!bool_value(f), "{f}");
        }
    }

    #[test]
    fn frames_carry_stream_and_big_endian_length() {
        let f = frame(2, b"err\n");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 4, b'e', b'r', b'r', b'\n']);
    }

    #[test]
    fn params_keep_repeated_keys() {
        let uri: axum::http::Uri = "/images/get?names=a&names=b%3A1&force=True"
            .parse()
            .unwrap();
        let p = Params::from_uri(&uri).unwrap();
        assert_eq!(p.all("names"), ["a", "b:1"]);
        assert!(p.flag("force"));
        assert!(!p.flag("quiet"));
    }
}
