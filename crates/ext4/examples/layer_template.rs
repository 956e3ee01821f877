//! Writable-layer template benchmark: formatting an empty ext4 against cloning a formatted
//! template of the same size (what the runtime does for each container's writable layer).
//!
//! Run: `cargo run -p ext4 --example layer_template -- DIR [SIZE_GIB] [RUNS]`. DIR should be
//! on the filesystem that holds the containers (the app root), since whether a clone is a
//! reflink depends on it. Prints the medians as `format_ms=X clone_ms=Y clone=KIND`, and
//! how much disk the template takes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: layer_template DIR [SIZE_GIB] [RUNS]")?,
    );
    let size: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(16) << 30;
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let work = tempfile::Builder::new()
        .prefix("layer-template-")
        .tempdir_in(&dir)?;
    let options = ext4::Options {
        label: "container-rw".into(),
        ..ext4::Options::default()
    };
    let templates = work.path().join("templates");
    // The template itself, outside the timing.
    let first = work.path().join("first.ext4");
    ext4::template::empty_from_template(&templates, &first, size, &options)?;
    let allocated = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(ext4::template::template_path(&templates, size, &options))?.blocks() * 512
    };
    let (mut formats, mut clones) = (Vec::new(), Vec::new());
    let mut kind = None;
    for i in 0..runs {
        let formatted = work.path().join(format!("formatted{i}.ext4"));
        let start = Instant::now();
        ext4::format_empty(&formatted, size, &options)?;
        formats.push(start.elapsed());
        let cloned = work.path().join(format!("cloned{i}.ext4"));
        let start = Instant::now();
        let made = ext4::template::empty_from_template(&templates, &cloned, size, &options)?;
        clones.push(start.elapsed());
        kind = Some(made);
        std::fs::remove_file(formatted)?;
        std::fs::remove_file(cloned)?;
    }
    let kind = match kind {
        Some(ext4::template::Made::Cloned(k))
        | Some(ext4::template::Made::FormattedTemplate(k)) => {
            format!("{k:?}")
        }
        None => "none".into(),
    };
    println!(
        "format_ms={:.1} clone_ms={:.1} clone={kind} size_gib={} allocated_kib={} runs={runs}",
        median(formats),
        median(clones),
        size >> 30,
        allocated >> 10
    );
    Ok(())
}
