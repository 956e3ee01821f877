//! [`ChunkWriter`]: the bridge from code that writes an archive through `std::io::Write` on a
//! blocking thread (a tar builder, an image saver) to a gRPC response stream of
//! [`DataChunk`]s.

use std::io::{self, Write};

use tokio::sync::mpsc;

use crate::v1::DataChunk;

/// Collects written bytes and sends them down `tx` as [`DataChunk`]s of `chunk_size` bytes
/// (the last one shorter, on `flush`). Writing fails with `BrokenPipe` once the receiver,
/// the client's stream, is gone. Call `flush` at the end: dropping the writer discards what
/// it still holds. Only for blocking threads: it blocks on a full channel.
#[derive(Debug)]
pub struct ChunkWriter {
    tx: mpsc::Sender<Result<DataChunk, tonic::Status>>,
    buf: Vec<u8>,
    chunk_size: usize,
}

impl ChunkWriter {
    /// A writer sending chunks of `chunk_size` bytes (at least 1) down `tx`.
    pub fn new(tx: mpsc::Sender<Result<DataChunk, tonic::Status>>, chunk_size: usize) -> Self {
        let chunk_size = chunk_size.max(1);
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(chunk_size),
            chunk_size,
        }
    }

    fn send(&mut self, data: Vec<u8>) -> io::Result<()> {
        self.tx
            .blocking_send(Ok(DataChunk { data }))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        while self.buf.len() >= self.chunk_size {
            let rest = self.buf.split_off(self.chunk_size);
            let full = std::mem::replace(&mut self.buf, rest);
            self.send(full)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.send(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_in_chunks_of_the_given_size() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut w = ChunkWriter::new(tx, 4);
        w.write_all(b"abc").unwrap();
        w.write_all(b"defghij").unwrap();
        w.flush().unwrap();
        drop(w);
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(Ok(c)) = rx.blocking_recv() {
            sizes.push(c.data.len());
            all.extend(c.data);
        }
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(all, b"abcdefghij");
    }

    #[test]
    fn writing_fails_once_the_receiver_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = ChunkWriter::new(tx, 2);
        let e = w.write_all(b"abcd").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
