//! Reading a growing log file line by line from where the last read stopped, for `logs -f`
//! and `system logs -f`: each read costs what was appended since, not the whole file.
//!
//! A file that shrinks or is replaced (a restarted container begins a new `stdio.log`) is
//! read again from its start. A last line without its newline is held back until the
//! writer finishes it, so a follower never sees a torn line.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, BufReader};

/// A position in one log file.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    file: Option<BufReader<tokio::fs::File>>,
    /// The inode of the open file, to notice a replaced one.
    inode: u64,
    /// Bytes read from the open file so far (whole lines and `partial`).
    offset: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
}

impl LogTail {
    /// A tail at the start of `path` (which need not exist yet).
    pub fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            file: None,
            inode: 0,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The next whole line (without its newline) appended since the last one, or `None`
    /// when there is none yet. A missing or unreadable file has no lines.
    pub async fn next_line(&mut self) -> Option<Vec<u8>> {
        if self.file.is_none() || self.partial.is_empty() {
            // Between lines: the moment to notice a new or replaced file.
            self.reopen_if_changed().await;
        }
        let file = self.file.as_mut()?;
        match file.read_until(b'\n', &mut self.partial).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => self.offset += n as u64,
        }
        if self.partial.last() != Some(&b'\n') {
            // The writer is midway through this line; the rest comes later.
            return None;
        }
        self.partial.pop();
        Some(std::mem::take(&mut self.partial))
    }

    /// Opens the file when it was not open, or again from its start when it shrank below
    /// what was read or another file took its name.
    async fn reopen_if_changed(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = tokio::fs::metadata(&self.path).await else {
            return;
        };
        let replaced =
            self.file.is_some() && (meta.ino() != self.inode || meta.len() < self.offset);
        if self.file.is_some() && !replaced {
            return;
        }
        match tokio::fs::File::open(&self.path).await {
            Ok(f) => {
                self.inode = match f.metadata().await {
                    Ok(m) => m.ino(),
                    Err(_) => meta.ino(),
                };
                self.file = Some(BufReader::new(f));
                self.offset = 0;
                self.partial.clear();
            }
            Err(e) => {
                tracing::debug!(path = %self.path.display(), "opening a log to follow: {e}");
                self.file = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    async fn lines(t: &mut LogTail) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(l) = t.next_line().await {
            out.push(String::from_utf8_lossy(&l).into_owned());
        }
        out
    }

    #[tokio::test]
    async fn reads_only_what_was_appended_and_holds_back_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdio.log");
        let mut t = LogTail::new(&path);
        assert!(lines(&mut t).await.is_empty(), "no file yet");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(lines(&mut t).await, ["one"]);
        assert!(lines(&mut t).await.is_empty());
        f.write_all(b"o\nthree\n").unwrap();
        assert_eq!(lines(&mut t).await, ["two", "three"]);
        assert_eq!(t.offset, 14, "every byte read once");
    }

    #[tokio::test]
    async fn starts_over_when_the_file_is_replaced_or_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdio.log");
        std::fs::write(&path, b"first run\n").unwrap();
        let mut t = LogTail::new(&path);
        assert_eq!(lines(&mut t).await, ["first run"]);
        // A restart writes a new file under the same name.
        let tmp = dir.path().join("new");
        std::fs::write(&tmp, b"second run, a longer line\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(lines(&mut t).await, ["second run, a longer line"]);
        // Truncated in place and written again.
        std::fs::write(&path, b"third\n").unwrap();
        assert_eq!(lines(&mut t).await, ["third"]);
    }
}
