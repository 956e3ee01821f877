//! Builds one ext4 image from OCI layers given as files.
//!
//! `cargo run --release -p ext4 --example layers2ext4 -- OUT.img LAYER...`
//! Each LAYER may be a plain tar, gzip or zstd (recognised by magic bytes).

use std::fs::File;
use std::io::{BufReader, Read};
use std::time::Instant;

fn open_layer(path: &str) -> std::io::Result<Box<dyn Read>> {
    let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut magic = [0u8; 4];
    let n = file.get_mut().read(&mut magic)?;
    drop(file);
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        _ => Box::new(file),
    })
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
            .map_err(|e| error_chain(&e))?;
        for layer in &args[1..] {
            let reader = open_layer(layer).map_err(|e| format!("{layer}: {e}"))?;
            builder.apply_layer(reader).map_err(|e| error_chain(&e))?;
        }
        builder.finish().map_err(|e| error_chain(&e))
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
