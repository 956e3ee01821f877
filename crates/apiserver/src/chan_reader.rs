//! A blocking reader over the chunks of an async stream: what lets the blocking checkers
//! (`oci::capture` reading a guest's layer tar) consume a gRPC stream a task relays.

use std::io::Read;

use tokio::sync::mpsc;

/// Reads the chunks sent on `rx` in order; an `Err` chunk becomes an I/O error, the channel's
/// end the end of the stream. Only for blocking code (`spawn_blocking`): it blocks on the
/// channel.
pub struct ChanReader {
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChanReader {
    pub fn new(rx: mpsc::Receiver<Result<Vec<u8>, String>>) -> Self {
        ChanReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_in_order_and_an_error_chunk_fails_the_read() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(b"ab".to_vec())).unwrap();
        tx.try_send(Ok(Vec::new())).unwrap();
        tx.try_send(Ok(b"cde".to_vec())).unwrap();
        drop(tx);
        let mut s = String::new();
        ChanReader::new(rx).read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcde");

        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(b"x".to_vec())).unwrap();
        tx.try_send(Err("the guest went away".into())).unwrap();
        let mut out = Vec::new();
        let e = ChanReader::new(rx).read_to_end(&mut out).unwrap_err();
        assert_eq!(e.to_string(), "the guest went away");
    }
}
