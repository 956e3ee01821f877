//! Builds one ext4 image from OCI layers given as files.
//!
//! `cargo run --release -p ext4 --example layers2ext4 -- OUT.img LAYER...`
//! Each LAYER may be a plain tar, gzip or zstd (recognised by magic bytes).

use std::fs::File;
use std::io::{BufReader, Read};
use std::time::Instant;

fn open_layer(path: &str) -> std::io::Result<Box<dyn Read + Send>> {
    let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut magic = [0u8; 4];
    let n = file.get_mut().read(&mut magic)?;
    drop(file);
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(Pipelined::new(Box::new(flate2::read::MultiGzDecoder::new(
            file,
        )))),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(Pipelined::new(Box::new(
            zstd::stream::read::Decoder::with_buffer(file)?,
        ))),
        _ => Box::new(file),
    })
}

/// Runs `inner` on its own thread and hands its bytes over in 1 MiB chunks,
/// so decompression overlaps with building the image (as `tar -xz` overlaps
/// gzip with extraction).
struct Pipelined {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Pipelined {
    fn new(mut inner: Box<dyn Read + Send>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        std::thread::spawn(move || {
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let mut filled = 0;
                while filled < buf.len() {
                    match inner.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                buf.truncate(filled);
                let done = filled == 0;
                if tx.send(Ok(buf)).is_err() || done {
                    return;
                }
            }
        });
        Pipelined {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for Pipelined {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: layers2ext4 OUT.img LAYER...");
        std::process::exit(2);
    }
    let start = Instant::now();
    let result = (|| -> Result<ext4::Summary, String> {
        let mut builder = ext4::Ext4Builder::new(&args[0], ext4::Options::default())
            .map_err(|e| spec::error_chain(&e))?;
        for layer in &args[1..] {
            let reader = open_layer(layer).map_err(|e| format!("{layer}: {e}"))?;
            builder
                .apply_layer(reader)
                .map_err(|e| spec::error_chain(&e))?;
        }
        builder.finish().map_err(|e| spec::error_chain(&e))
    })();
    match result {
        Ok(s) => println!(
            "{}: {} files, {} dirs, {} symlinks, {} special, {} bytes of data, image {} bytes, {:.3}s",
            args[0],
            s.files,
            s.dirs,
            s.symlinks,
            s.specials,
            s.bytes,
            s.image_size,
            start.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("layers2ext4: {e}");
            std::process::exit(1);
        }
    }
}
