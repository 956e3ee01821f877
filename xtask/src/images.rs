//! `cargo xtask images`: the offline test images, deterministic to the byte.
//!
//! Five images, never pulled from the internet:
//! - `busybox`: one layer from Debian's busybox-static, every applet hard-linked at its real
//!   path (`busybox --list-full`), /etc/passwd and /etc/group.
//! - `busybox-arm64`: the same from Debian's `busybox-static:arm64` of the same version
//!   (fetched once through a private apt state, `deps::busybox_static`), for linux/arm64/v8.
//! - `busybox-multi`: an image index holding both busybox manifests (linux/amd64 and
//!   linux/arm64/v8), as multi-platform images on Docker Hub are.
//! - `multilayer`: three layers whose upper ones delete and replace what lower ones hold:
//!   whiteouts, an opaque directory, a file replacing a directory and the reverse, hard links,
//!   fast and slow symlinks, a fifo, a device node, xattrs, setuid and owned files.
//! - `manyfiles`: 112,920 small files (~410 MB) in an opam-like tree, the shape of the
//!   ocaml/opam image that took Apple's tool 9m24s to unpack. Generated from a fixed seed.
//!
//! Output, under `<cache>/images/<key>/` (`<cache>/images/current` links to the newest):
//! `oci/<name>/` an OCI image layout tagged `latest`; `<name>.docker.tar` a classic
//! `docker save` archive (busybox and multilayer only: manyfiles would double 400 MB for no
//! test that needs it). `bin/busybox-<arch>` are the two busybox binaries themselves, for
//! VM tests that make a rootfs of their own. Every timestamp is fixed and gzip headers carry no time, so digests
//! are stable across runs and machines with the same busybox binary.

use crate::paths::{self, cache_dir};
use crate::run::{output, step};
use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when any generator below changes its output.
const GENERATOR_VERSION: &str = "2";
/// Every entry's mtime and the config's `created`: 2026-01-01T00:00:00Z.
const EPOCH: u64 = 1_767_225_600;
const CREATED: &str = "2026-01-01T00:00:00Z";
const BUSYBOX: &str = "/bin/busybox";

pub fn build() -> Result<PathBuf> {
    let busybox_sum = paths::sha256_file(Path::new(BUSYBOX))
        .context("busybox-static is missing: run `cargo xtask deps`")?;
    let busybox_arm64 = crate::deps::busybox_static("arm64")?;
    let arm64_sum = paths::sha256_file(&busybox_arm64)?;
    let key = &paths::sha256_bytes(&[
        GENERATOR_VERSION.as_bytes(),
        busybox_sum.as_bytes(),
        arm64_sum.as_bytes(),
    ])[..16];
    let root = cache_dir().join("images");
    let dir = root.join(key);
    if !dir.join(".complete").exists() {
        let tmp = root.join(format!("{key}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join("oci"))?;
        step("building test image busybox");
        let amd64 = Path::new(BUSYBOX);
        let busybox = write_image(&tmp, "busybox", &[&|b| busybox_layer(b, amd64)], &["sh"])?;
        docker_archive(&tmp, "busybox", &busybox)?;
        step("building test images busybox-arm64 and busybox-multi");
        let arm64: &Path = &busybox_arm64;
        write_platform_image(
            &tmp,
            "busybox-arm64",
            &[(ARM64, &[&|b| busybox_layer(b, arm64)])],
            &["sh"],
        )?;
        write_platform_image(
            &tmp,
            "busybox-multi",
            &[
                (AMD64, &[&|b| busybox_layer(b, amd64)]),
                (ARM64, &[&|b| busybox_layer(b, arm64)]),
            ],
            &["sh"],
        )?;
        fs::create_dir_all(tmp.join("bin"))?;
        fs::copy(amd64, tmp.join("bin/busybox-amd64"))?;
        fs::copy(arm64, tmp.join("bin/busybox-arm64"))?;
        step("building test image multilayer");
        let multi = write_image(
            &tmp,
            "multilayer",
            &[&multilayer_base, &multilayer_middle, &multilayer_top],
            &["/bin/sh"],
        )?;
        docker_archive(&tmp, "multilayer", &multi)?;
        step("building test image manyfiles (~410 MB, about a minute)");
        write_image(&tmp, "manyfiles", &[&manyfiles_layer], &["/bin/sh"])?;
        File::create(tmp.join(".complete"))?;
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&tmp, &dir)?;
    }
    paths::symlink_force(&dir, &root.join("current"))?;
    Ok(dir)
}

/// The names of the images `build` makes, for the registry to push.
pub const NAMES: &[&str] = &[
    "busybox",
    "busybox-arm64",
    "busybox-multi",
    "multilayer",
    "manyfiles",
];

/// A written blob: its digest (`sha256:...`), size, and for layers the uncompressed digest.
#[derive(Clone)]
struct Blob {
    digest: String,
    size: u64,
    diff_id: String,
}

/// What `write_image` produced, for the docker archive.
struct Image {
    config: Blob,
    layers: Vec<Blob>,
}

type LayerFn<'a> = &'a dyn Fn(&mut tar::Builder<&mut dyn Write>) -> Result<()>;

/// An image's platform: (OCI architecture, variant).
type PlatformSpec = (&'static str, Option<&'static str>);
const AMD64: PlatformSpec = ("amd64", None);
const ARM64: PlatformSpec = ("arm64", Some("v8"));

/// A single-platform linux/amd64 image, its manifest tagged `latest` in the layout.
fn write_image(out: &Path, name: &str, layers: &[LayerFn], cmd: &[&str]) -> Result<Image> {
    let (image, _) = write_platform_image(out, name, &[(AMD64, layers)], cmd)?;
    Ok(image)
}

/// An image of one platform (its manifest tagged `latest`) or several (an image index tagged
/// `latest`, one manifest per platform). Returns the first platform's image and the tagged
/// descriptor's digest.
fn write_platform_image(
    out: &Path,
    name: &str,
    platforms: &[(PlatformSpec, &[LayerFn])],
    cmd: &[&str],
) -> Result<(Image, String)> {
    let layout = out.join("oci").join(name);
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let mut entries = Vec::new();
    let mut first = None;
    for ((arch, variant), layers) in platforms {
        let (image, manifest) = write_manifest(&blobs, name, (arch, *variant), layers, cmd)?;
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.digest,
            "size": manifest.size,
            "platform": platform,
        }));
        first.get_or_insert(image);
    }
    let first = first.context("an image needs a platform")?;
    let tagged = if entries.len() == 1 {
        entries.remove(0)
    } else {
        let index = write_json_blob(
            &blobs,
            &json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": entries,
            }),
        )?;
        json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index.digest,
            "size": index.size,
        })
    };
    let mut tagged = tagged;
    tagged["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let digest = tagged["digest"].as_str().unwrap_or_default().to_owned();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [tagged],
    });
    fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok((first, digest))
}

/// One platform's layers, config and manifest as blobs; returns the image and the manifest.
fn write_manifest(
    blobs: &Path,
    name: &str,
    (arch, variant): (&str, Option<&str>),
    layers: &[LayerFn],
    cmd: &[&str],
) -> Result<(Image, Blob)> {
    let mut written = Vec::new();
    for layer in layers {
        written.push(write_layer(blobs, *layer)?);
    }
    let mut config = json!({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": written.iter().map(|b| b.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": written.iter().enumerate().map(|(i, _)| json!({
            "created": CREATED,
            "created_by": format!("cargo xtask images: {name} layer {i}"),
        })).collect::<Vec<_>>(),
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    let config = write_json_blob(blobs, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest,
            "size": config.size,
        },
        "layers": written.iter().map(|b| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": b.digest,
            "size": b.size,
        })).collect::<Vec<_>>(),
    });
    let manifest = write_json_blob(blobs, &manifest)?;
    Ok((
        Image {
            config,
            layers: written,
        },
        manifest,
    ))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Stream a layer: tar -> hash (diff_id) -> gzip -> hash (digest) -> temp file -> blob.
fn write_layer(blobs: &Path, layer: LayerFn) -> Result<Blob> {
    let tmp = blobs.join("layer.tmp");
    let file = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let compressed = Hashing::new(file);
    let gz = GzEncoder::new(compressed, Compression::new(6));
    let mut uncompressed = Hashing::new(gz);
    {
        let mut builder = tar::Builder::new(&mut uncompressed as &mut dyn Write);
        builder.mode(tar::HeaderMode::Deterministic);
        layer(&mut builder)?;
        builder.finish()?;
    }
    let diff_id = uncompressed.digest();
    let mut compressed = uncompressed.inner.finish()?;
    compressed.flush()?;
    let blob = Blob {
        digest: compressed.digest(),
        size: compressed.count,
        diff_id,
    };
    fs::rename(&tmp, blobs.join(&blob.digest["sha256:".len()..]))?;
    Ok(blob)
}

fn write_json_blob(blobs: &Path, value: &serde_json::Value) -> Result<Blob> {
    let bytes = serde_json::to_vec(value)?;
    let digest = format!("sha256:{}", paths::sha256_bytes(&[&bytes]));
    fs::write(blobs.join(&digest["sha256:".len()..]), &bytes)?;
    Ok(Blob {
        digest: digest.clone(),
        size: bytes.len() as u64,
        diff_id: digest,
    })
}

/// A classic `docker save` archive: manifest.json, repositories, the config as `<hex>.json`,
/// and each layer uncompressed as `<diff_id hex>/layer.tar`.
fn docker_archive(out: &Path, name: &str, image: &Image) -> Result<()> {
    let blobs = out.join("oci").join(name).join("blobs/sha256");
    let hex_of = |d: &str| d["sha256:".len()..].to_string();
    let path = out.join(format!("{name}.docker.tar"));
    let mut archive = tar::Builder::new(BufWriter::new(File::create(&path)?));
    archive.mode(tar::HeaderMode::Deterministic);
    let config_name = format!("{}.json", hex_of(&image.config.digest));
    archive.append_path_with_name(blobs.join(hex_of(&image.config.digest)), &config_name)?;
    let mut layer_names = Vec::new();
    for layer in &image.layers {
        let dir = hex_of(&layer.diff_id);
        let mut uncompressed = Vec::new();
        io::copy(
            &mut flate2::read::GzDecoder::new(File::open(blobs.join(hex_of(&layer.digest)))?),
            &mut uncompressed,
        )?;
        append_bytes(
            &mut archive,
            &format!("{dir}/layer.tar"),
            &uncompressed,
            0o644,
        )?;
        layer_names.push(format!("{dir}/layer.tar"));
    }
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [format!("{name}:latest")],
        "Layers": layer_names,
    }]);
    append_bytes(
        &mut archive,
        "manifest.json",
        &serde_json::to_vec(&manifest)?,
        0o644,
    )?;
    let top = image
        .layers
        .last()
        .map(|l| hex_of(&l.diff_id))
        .unwrap_or_default();
    let repositories = json!({ name: { "latest": top } });
    append_bytes(
        &mut archive,
        "repositories",
        &serde_json::to_vec(&repositories)?,
        0o644,
    )?;
    archive.into_inner()?.flush()?;
    Ok(())
}

// ---- tar entry helpers ----------------------------------------------------------------------

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(EPOCH);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data)?;
    Ok(())
}

fn append_owned(
    b: &mut tar::Builder<&mut dyn Write>,
    path: &str,
    data: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    h.set_uid(uid);
    h.set_gid(gid);
    b.append_data(&mut h, path, data)?;
    Ok(())
}

fn append_dir(b: &mut tar::Builder<&mut dyn Write>, path: &str, mode: u32) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, io::empty())?;
    Ok(())
}

fn append_link(
    b: &mut tar::Builder<&mut dyn Write>,
    kind: tar::EntryType,
    path: &str,
    target: &str,
) -> Result<()> {
    let mut h = header(
        kind,
        if kind == tar::EntryType::Symlink {
            0o777
        } else {
            0o644
        },
        0,
    );
    b.append_link(&mut h, path, target)?;
    Ok(())
}

fn append_special(
    b: &mut tar::Builder<&mut dyn Write>,
    kind: tar::EntryType,
    path: &str,
    mode: u32,
    dev: (u32, u32),
) -> Result<()> {
    let mut h = header(kind, mode, 0);
    h.set_device_major(dev.0)?;
    h.set_device_minor(dev.1)?;
    b.append_data(&mut h, path, io::empty())?;
    Ok(())
}

/// A regular file carrying extended attributes, as a PAX `SCHILY.xattr.*` record.
fn append_with_xattrs(
    b: &mut tar::Builder<&mut dyn Write>,
    path: &str,
    data: &[u8],
    xattrs: &[(&str, &[u8])],
) -> Result<()> {
    let records: Vec<(String, &[u8])> = xattrs
        .iter()
        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
        .collect();
    b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
    append_bytes(b, path, data, 0o644)
}

// ---- busybox ------------------------------------------------------------------------------

/// The busybox rootfs around `binary` (a busybox-static of any architecture). The applet
/// list comes from the host's busybox: the other architecture's binary is the same Debian
/// version and configuration, and cannot run here without an emulator.
fn busybox_layer(b: &mut tar::Builder<&mut dyn Write>, binary: &Path) -> Result<()> {
    for dir in [
        "bin", "dev", "etc", "home", "proc", "root", "sys", "usr", "usr/bin", "usr/sbin", "sbin",
        "var", "var/www",
    ] {
        append_dir(b, dir, if dir == "root" { 0o700 } else { 0o755 })?;
    }
    append_dir(b, "tmp", 0o1777)?;
    let binary = fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    append_bytes(b, "bin/busybox", &binary, 0o755)?;
    let list = output(Command::new(BUSYBOX).arg("--list-full"))?;
    let mut applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "bin/busybox" && *p != "linuxrc")
        .collect();
    applets.sort_unstable();
    if !applets.contains(&"bin/sh") {
        bail!("{BUSYBOX} --list-full has no bin/sh: not the busybox-static we expect");
    }
    for applet in applets {
        append_link(b, tar::EntryType::Link, applet, "bin/busybox")?;
    }
    append_bytes(
        b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n\
          daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
          www-data:x:33:33:www-data:/var/www:/bin/false\n\
          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    )?;
    append_bytes(
        b,
        "etc/group",
        b"root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nusers:x:100:www-data\nnogroup:x:65534:\n",
        0o644,
    )?;
    append_bytes(
        b,
        "var/www/index.html",
        b"<h1>served from a container VM</h1>\n",
        0o644,
    )
}

// ---- multilayer ---------------------------------------------------------------------------

const SLOW_SYMLINK_TARGET: &str =
    "data/sub/../../a/long/target/path/that/does/not/fit/in/the/sixty/byte/inode/area/of/ext4";

fn multilayer_base(b: &mut tar::Builder<&mut dyn Write>) -> Result<()> {
    for dir in [
        "bin",
        "etc",
        "data",
        "data/sub",
        "opaque",
        "opaque/deep",
        "dir-to-file",
        "dev",
    ] {
        append_dir(b, dir, 0o755)?;
    }
    append_bytes(b, "etc/config", b"version 1\n", 0o644)?;
    append_bytes(b, "etc/keep", b"kept from the base layer\n", 0o600)?;
    append_bytes(b, "data/a", b"a from base\n", 0o644)?;
    append_bytes(
        b,
        "data/b",
        b"b from base, deleted by the middle layer\n",
        0o644,
    )?;
    append_bytes(
        b,
        "data/sub/c",
        b"c from base, deleted with its directory by the top layer\n",
        0o644,
    )?;
    append_bytes(b, "opaque/x", b"hidden by the opaque marker\n", 0o644)?;
    append_bytes(b, "opaque/deep/y", b"hidden by the opaque marker\n", 0o644)?;
    append_bytes(
        b,
        "gone.txt",
        b"deleted by the middle layer, recreated by the top one\n",
        0o644,
    )?;
    append_bytes(
        b,
        "dir-to-file/inner",
        b"inside a directory the middle layer replaces with a file\n",
        0o644,
    )?;
    append_bytes(
        b,
        "file-to-dir",
        b"a file the middle layer replaces with a directory\n",
        0o644,
    )?;
    append_bytes(b, "link-target.txt", b"one inode, two names\n", 0o644)?;
    append_link(b, tar::EntryType::Link, "hard1", "link-target.txt")?;
    append_link(b, tar::EntryType::Symlink, "short", "link-target.txt")?;
    append_link(b, tar::EntryType::Symlink, "long", SLOW_SYMLINK_TARGET)?;
    append_special(b, tar::EntryType::Fifo, "pipe", 0o644, (0, 0))?;
    append_special(b, tar::EntryType::Char, "dev/zero", 0o666, (1, 5))?;
    append_with_xattrs(
        b,
        "xattr.txt",
        b"has extended attributes\n",
        &[("user.test", b"hello"), ("user.other", b"world")],
    )?;
    append_bytes(b, "bin/suid", b"#!/bin/sh\necho setuid\n", 0o4755)?;
    append_owned(b, "owned", b"owned by 1000:1000\n", 0o640, 1000, 1000)
}

fn multilayer_middle(b: &mut tar::Builder<&mut dyn Write>) -> Result<()> {
    append_bytes(b, ".wh.gone.txt", b"", 0o644)?;
    append_bytes(b, "etc/config", b"version 2\n", 0o644)?;
    append_bytes(b, "data/.wh.b", b"", 0o644)?;
    append_dir(b, "opaque", 0o755)?;
    append_bytes(b, "opaque/.wh..wh..opq", b"", 0o644)?;
    append_bytes(
        b,
        "opaque/z",
        b"the only entry left in the opaque directory\n",
        0o644,
    )?;
    append_bytes(b, "dir-to-file", b"now a file\n", 0o644)?;
    append_dir(b, "file-to-dir", 0o755)?;
    append_bytes(
        b,
        "file-to-dir/new",
        b"inside what used to be a file\n",
        0o644,
    )?;
    append_bytes(b, "newfile", b"added by the middle layer\n", 0o644)?;
    append_link(b, tar::EntryType::Link, "newfile-link", "newfile")?;
    append_with_xattrs(
        b,
        "xattr.txt",
        b"replaced, with a changed attribute\n",
        &[("user.test", b"changed")],
    )
}

fn multilayer_top(b: &mut tar::Builder<&mut dyn Write>) -> Result<()> {
    append_bytes(b, "data/.wh.sub", b"", 0o644)?;
    append_bytes(b, "gone.txt", b"back again\n", 0o644)?;
    append_link(b, tar::EntryType::Symlink, "short", "etc/config")
}

// ---- manyfiles ----------------------------------------------------------------------------

/// splitmix64: tiny, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Lognormal via Box-Muller.
    fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mu + sigma * z).exp()
    }
}

pub const MANYFILES_PACKAGES: usize = 1882;
const FILES_PER_PACKAGE: usize = 60;

fn manyfiles_layer(b: &mut tar::Builder<&mut dyn Write>) -> Result<()> {
    let mut rng = Rng(42);
    let alphabet = b"abcdefghijklmnopqrstuvwxyz_";
    let words: Vec<Vec<u8>> = (0..5000)
        .map(|_| {
            let len = 2 + rng.below(9) as usize;
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect()
        })
        .collect();
    let exts = ["ml", "mli", "cmi", "cmx", "cmt", "o", "a"];
    let subs = ["", "byte/", "native/", "doc/"];
    let lib = "home/opam/.opam/default/lib";
    for dir in [
        "home",
        "home/opam",
        "home/opam/.opam",
        "home/opam/.opam/default",
        lib,
    ] {
        append_dir(b, dir, 0o755)?;
    }
    let mut data = Vec::with_capacity(256 * 1024);
    for p in 0..MANYFILES_PACKAGES {
        let pkg = format!("{lib}/pkg{p:04}");
        append_dir(b, &pkg, 0o755)?;
        for sub in &subs[1..] {
            append_dir(b, &format!("{pkg}/{}", sub.trim_end_matches('/')), 0o755)?;
        }
        for i in 0..FILES_PER_PACKAGE {
            let size = (rng.lognormal(7.7, 1.0) as usize).min(200_000);
            data.clear();
            while data.len() < size {
                if !data.is_empty() {
                    data.push(b' ');
                }
                data.extend_from_slice(&words[rng.below(words.len() as u64) as usize]);
            }
            data.truncate(size);
            let ext = exts[rng.below(exts.len() as u64) as usize];
            let path = format!("{pkg}/{}f{i:03}.{ext}", subs[i % subs.len()]);
            append_bytes(b, &path, &data, 0o644)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-images-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("oci")).unwrap();
        dir
    }

    /// Two builds in different places give byte-identical manifests and layers.
    #[test]
    fn images_are_deterministic() {
        let (a, b) = (temp("a"), temp("b"));
        for dir in [&a, &b] {
            write_image(
                dir,
                "multilayer",
                &[&multilayer_base, &multilayer_middle, &multilayer_top],
                &["/bin/sh"],
            )
            .unwrap();
        }
        let index = |d: &Path| fs::read(d.join("oci/multilayer/index.json")).unwrap();
        assert_eq!(index(&a), index(&b));
        let listing = |d: &Path| {
            let mut names: Vec<_> = fs::read_dir(d.join("oci/multilayer/blobs/sha256"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        assert_eq!(listing(&a), listing(&b));
        assert_eq!(listing(&a).len(), 5, "3 layers + config + manifest");
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }

    /// A multi-platform image is an index tagged `latest` whose two manifests name their
    /// platforms, and each config says the same architecture as its index entry.
    #[test]
    fn multi_platform_image_is_an_index_of_both_platforms() {
        let dir = temp("multi");
        let (_, digest) = write_platform_image(
            &dir,
            "multi",
            &[(AMD64, &[&multilayer_top]), (ARM64, &[&multilayer_middle])],
            &["sh"],
        )
        .unwrap();
        let layout = dir.join("oci/multi");
        let top: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        assert_eq!(top["manifests"][0]["digest"], json!(digest));
        assert_eq!(
            top["manifests"][0]["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let blob = |d: &str| -> serde_json::Value {
            serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap())
                .unwrap()
        };
        let index = blob(&digest);
        let platforms: Vec<(String, String)> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let config = blob(
                    blob(m["digest"].as_str().unwrap())["config"]["digest"]
                        .as_str()
                        .unwrap(),
                );
                assert_eq!(config["architecture"], m["platform"]["architecture"]);
                (
                    m["platform"]["architecture"].as_str().unwrap().to_owned(),
                    m["platform"]["variant"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            platforms,
            [
                ("amd64".to_owned(), String::new()),
                ("arm64".to_owned(), "v8".to_owned())
            ]
        );
        fs::remove_dir_all(dir).unwrap();
    }

    /// The generator's random stream is pinned: a change would silently change manyfiles.
    #[test]
    fn manyfiles_generator_is_pinned() {
        let mut rng = Rng(42);
        let first: Vec<u64> = (0..3).map(|_| rng.next()).collect();
        assert_eq!(
            first,
            [
                13679457532755275413,
                2949826092126892291,
                5139283748462763858
            ]
        );
    }
}
