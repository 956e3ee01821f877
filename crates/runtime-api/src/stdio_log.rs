//! `<bundle>/stdio.log`: the init process's output as JSON lines, one entry per line of
//! output (or per chunk when a line is not finished yet), written and flushed as it comes.
//!
//! ```text
//! {"stream":"stdout","time":"2026-11-23T16:47:01.123456789Z","log":"hi\n"}
//! {"stream":"stderr","time":"…","log":"\ufffd\n","log_base64":"/wo="}
//! ```
//! `log` is the text; when the bytes are not UTF-8 it holds a lossy rendering and
//! `log_base64` the exact bytes, so the log is lossless either way.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Which output stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output (and, with a terminal, everything).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of stdio.log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The stream.
    pub stream: Stream,
    /// When the runtime received the bytes (RFC 3339, nanoseconds, UTC).
    pub time: String,
    /// The bytes as text (lossy when they are not UTF-8).
    pub log: String,
    /// The exact bytes, present only when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_base64: Option<String>,
}

impl Entry {
    /// The exact bytes of this entry.
    pub fn bytes(&self) -> Vec<u8> {
        match &self.log_base64 {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_else(|_| self.log.clone().into_bytes()),
            None => self.log.clone().into_bytes(),
        }
    }
}

/// Reads every entry of a stdio.log (skipping a torn last line).
pub fn read_entries(path: &Path) -> std::io::Result<Vec<Entry>> {
    let text = std::fs::read(path)?;
    Ok(text
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect())
}

/// The log writer: shared by the stdout and stderr pumps.
#[derive(Debug)]
pub struct StdioLog {
    file: Mutex<File>,
}

/// Splits `data` into entries' payloads: each line with its newline, then the unfinished
/// rest.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split_inclusive(|b| *b == b'\n')
}

impl StdioLog {
    /// Opens the log at `path` for appending, creating it if missing: a restarted container
    /// keeps the output of its earlier runs, as `docker logs` shows them.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = crate::fsutil::open_private_append(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Appends `data` from `stream`, one entry per line, and flushes.
    pub fn write(&self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let time = crate::fsutil::now_rfc3339();
        let mut out = Vec::with_capacity(data.len() + 96);
        for line in lines(data) {
            let entry = match std::str::from_utf8(line) {
                Ok(text) => Entry {
                    stream,
                    time: time.clone(),
                    log: text.to_string(),
                    log_base64: None,
                },
                Err(_) => Entry {
                    stream,
                    time: time.clone(),
                    log: String::from_utf8_lossy(line).into_owned(),
                    log_base64: Some(base64::engine::general_purpose::STANDARD.encode(line)),
                },
            };
            serde_json::to_writer(&mut out, &entry).map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        // A poisoned lock only means another pump panicked mid-write; the file is still usable.
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&out)?;
        file.flush()
    }
}

/// Holds back an incomplete UTF-8 sequence at the end of a chunk so that a character split
/// across two reads is logged whole.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// Prepends what was held back and returns the bytes to log now.
    pub fn take(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(chunk);
        if let Err(e) = std::str::from_utf8(&data)
            && e.error_len().is_none()
        {
            // The tail is a valid but unfinished sequence (at most 3 bytes).
            self.pending = data.split_off(e.valid_up_to());
        }
        data
    }

    /// What is still held back (at end of stream).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_entries_and_bytes_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdio.log");
        let log = StdioLog::open(&path).unwrap();
        log.write(Stream::Stdout, b"hi\nthere").unwrap();
        drop(log);
        let log = StdioLog::open(&path).unwrap();
        log.write(Stream::Stderr, b"\xff\xfe oops\n").unwrap();
        let entries = read_entries(&path).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].log, "hi\n");
        assert_eq!(entries[1].log, "there");
        assert_eq!(entries[0].stream, Stream::Stdout);
        assert_eq!(entries[2].stream, Stream::Stderr);
        assert_eq!(entries[2].bytes(), b"\xff\xfe oops\n");
        assert!(entries[2].log_base64.is_some());
        assert!(entries[0].log_base64.is_none());
        // RFC 3339 with nanoseconds.
        assert_eq!(
            entries[0].time.len(),
            "2026-11-23T16:47:01.123456789Z".len()
        );
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(!raw.lines().next().unwrap().contains("log_base64"));
    }

    #[test]
    fn split_characters_are_carried() {
        let mut carry = Utf8Carry::default();
        let euro = "€".as_bytes();
        assert_eq!(carry.take(&[b'a', euro[0], euro[1]]), b"a");
        assert_eq!(carry.take(&[euro[2], b'\n']), "€\n".as_bytes());
        assert!(carry.finish().is_empty());
        // Invalid bytes are not held back (they never become valid).
        assert_eq!(carry.take(b"\xffz"), b"\xffz");
    }
}
