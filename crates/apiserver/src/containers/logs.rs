//! Logs: the init process's `stdio.log` (JSON lines) and the VM's `boot.log`, whole, their
//! tail, or followed while the container runs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use api::v1;
use tokio::sync::mpsc;
use tonic::Request;
use tonic::codegen::BoxStream;

use super::{CHUNK, Res, boxed, ok};
use crate::daemon::Daemon;
use crate::record::Phase;
use crate::tail::LogTail;

pub(super) async fn logs(
    daemon: &Arc<Daemon>,
    req: Request<v1::LogsRequest>,
) -> Res<BoxStream<v1::LogChunk>> {
    let r = req.into_inner();
    let id = daemon.lookup(&r.id)?;
    let bundle = daemon.bundle(&id);
    let (tx, rx) = mpsc::channel(16);
    let daemon = Arc::clone(daemon);
    if r.boot {
        let path = bundle.boot_log();
        tokio::spawn(async move {
            let data = tokio::fs::read(&path).await.unwrap_or_default();
            let data = match r.tail {
                Some(n) => tail_bytes(&data, n as usize).to_vec(),
                None => data,
            };
            for c in data.chunks(CHUNK) {
                let chunk = v1::LogChunk {
                    stream: v1::OutputStream::Boot as i32,
                    data: c.to_vec(),
                    timestamp_ms: 0,
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        return ok(boxed(rx));
    }
    let path = bundle.stdio_log();
    tokio::spawn(async move {
        let mut changes = daemon.changes.subscribe();
        // The log is read once, line by line; following reads only what was appended.
        let mut log = LogTail::new(&path);
        let mut last = VecDeque::new();
        while let Some(line) = log.next_line().await {
            let Some(c) = log_chunk(&line) else {
                continue;
            };
            match r.tail {
                Some(n) => {
                    last.push_back(c);
                    if last.len() > n as usize {
                        last.pop_front();
                    }
                }
                None => {
                    if tx.send(Ok(c)).await.is_err() {
                        return;
                    }
                }
            }
        }
        for c in last {
            if tx.send(Ok(c)).await.is_err() {
                return;
            }
        }
        if !r.follow {
            return;
        }
        loop {
            // Read after the check: output written before the container stopped is sent.
            let running = daemon.record(&id).is_ok_and(|r| r.phase == Phase::Running);
            while let Some(line) = log.next_line().await {
                if let Some(c) = log_chunk(&line)
                    && tx.send(Ok(c)).await.is_err()
                {
                    return;
                }
            }
            if !running {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = changes.changed() => {}
                _ = tx.closed() => return,
            }
        }
    });
    ok(boxed(rx))
}

/// Parses one stdio.log line into a chunk.
fn log_chunk(line: &[u8]) -> Option<v1::LogChunk> {
    let e: runtime_api::stdio_log::Entry = serde_json::from_slice(line).ok()?;
    Some(v1::LogChunk {
        stream: match e.stream {
            runtime_api::stdio_log::Stream::Stdout => v1::OutputStream::Stdout as i32,
            runtime_api::stdio_log::Stream::Stderr => v1::OutputStream::Stderr as i32,
        },
        data: e.bytes(),
        timestamp_ms: crate::fsutil::rfc3339_to_ms(&e.time),
    })
}

/// The last `n` lines of `data`.
fn tail_bytes(data: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_bytes(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_bytes(b"a\nb\nc", 1), b"c");
        assert_eq!(tail_bytes(b"a\n", 5), b"a\n");
        assert_eq!(tail_bytes(b"a\n", 0), b"");
    }
}
