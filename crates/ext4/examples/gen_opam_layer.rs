//! Writes a synthetic OCI layer shaped like an opam switch: ~113k small files
//! (lognormal sizes, mean ~3.5 KB, ~400 MB total), 60 files per package spread
//! over pkgNNNN/{,byte,native,doc}. Deterministic for a given file count.
//!
//! `cargo run --release -p ext4 --example gen_opam_layer -- OUT.tar [FILES]`

use std::fs::File;
use std::io::BufWriter;

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Lognormal with the given mu and sigma (Box-Muller).
    fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mu + sigma * z).exp()
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: gen_opam_layer OUT.tar [FILES]");
        std::process::exit(2);
    };
    let files: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(113_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, File::create(out)?));
    let sigma: f64 = 1.2;
    let mu = 3500f64.ln() - sigma * sigma / 2.0;
    let subdirs = ["", "byte/", "native/", "doc/"];
    let dir_header = |tar: &mut tar::Builder<_>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        tar.append_data(&mut h, path, &[][..])
    };
    let base = "home/opam/.opam/default/lib/";
    for p in [
        "home/",
        "home/opam/",
        "home/opam/.opam/",
        "home/opam/.opam/default/",
        base,
    ] {
        dir_header(&mut tar, p)?;
    }
    let mut data = Vec::new();
    let mut total = 0u64;
    for i in 0..files {
        let pkg = i / 60;
        let sub = subdirs[(i % 60) / 15];
        if i % 60 == 0 {
            for s in subdirs {
                dir_header(&mut tar, &format!("{base}pkg{pkg:04}/{s}"))?;
            }
        }
        let size = (rng.lognormal(mu, sigma) as usize).min(4 << 20);
        data.clear();
        while data.len() < size {
            data.extend_from_slice(&rng.next().to_le_bytes());
        }
        data.truncate(size);
        total += size as u64;
        let ext = ["ml", "cmi", "cmx", "cmt", "o", "a", "html"][i % 7];
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        h.set_size(size as u64);
        tar.append_data(
            &mut h,
            format!("{base}pkg{pkg:04}/{sub}file{i:06}.{ext}"),
            &data[..],
        )?;
    }
    tar.into_inner()?;
    eprintln!("{out}: {files} files, {total} bytes of content");
    Ok(())
}
