//! The build context as it reaches the daemon: a tar the client sent (the CLI's plain tar,
//! or a Docker client's body, which may be gzip or zstd compressed), unpacked into the
//! build's work directory; and the Dockerfile a Docker client names by its path inside
//! that context. Nothing here knows about gRPC or HTTP.

use std::fs;
use std::io::{BufReader, Read};
use std::path::Path;

/// The largest Dockerfile read from a context: a larger one is refused, not held.
const MAX_DOCKERFILE: u64 = 4 << 20;

/// Why a context could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("the build context is not a valid tar: {0}")]
    Tar(#[source] std::io::Error),
    #[error("{0}-compressed build contexts are not supported: send a plain, gzip or zstd tar")]
    Compression(&'static str),
    #[error("cannot locate specified Dockerfile: {0}")]
    NoDockerfile(String),
    #[error("the Dockerfile {0} is larger than 4 MiB")]
    TooLarge(String),
    #[error("the Dockerfile {0} is not UTF-8 text")]
    NotText(String),
    #[error("reading the Dockerfile {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ContextError {
    /// The error's kind on the wire.
    pub fn kind(&self) -> api::ErrorKind {
        match self {
            ContextError::NoDockerfile(_) => api::ErrorKind::NotFound,
            ContextError::Read { .. } => api::ErrorKind::Internal,
            _ => api::ErrorKind::InvalidArgument,
        }
    }
}

impl From<ContextError> for api::ApiError {
    fn from(e: ContextError) -> api::ApiError {
        api::ApiError::new(e.kind(), e.to_string())
    }
}

/// What the first bytes of a context say about its compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    /// Sniffs `head` (the first bytes, up to six).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else {
            Compression::None
        }
    }
}

/// Opens the context at `spool` as an uncompressed tar stream.
pub fn open(spool: &Path) -> Result<Box<dyn Read>, ContextError> {
    let mut f = fs::File::open(spool).map_err(ContextError::Tar)?;
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(ContextError::Tar)? {
            0 => break,
            k => n += k,
        }
    }
    let rest = std::io::Cursor::new(head[..n].to_vec()).chain(f);
    let reader = BufReader::new(rest);
    Ok(match Compression::detect(&head[..n]) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::with_buffer(reader).map_err(ContextError::Tar)?)
        }
        Compression::Bzip2 => return Err(ContextError::Compression("bzip2")),
        Compression::Xz => return Err(ContextError::Compression("xz")),
    })
}

/// Unpacks the context at `spool` into `dest` (which exists). Entries that would land
/// outside `dest` are refused by the tar crate's `unpack`.
pub fn unpack(spool: &Path, dest: &Path) -> Result<(), ContextError> {
    let mut archive = tar::Archive::new(open(spool)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.unpack(dest).map_err(ContextError::Tar)
}

/// Reads the Dockerfile at `path` inside the unpacked `context` (symlinks resolved inside
/// it): its text and the name errors give it.
pub fn read_dockerfile(context: &Path, path: &str) -> Result<(String, String), ContextError> {
    let missing = || ContextError::NoDockerfile(path.to_string());
    let full = build::layer::resolve_in_root(context, path, true).map_err(|_| missing())?;
    let meta = fs::metadata(&full).map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    if meta.len() > MAX_DOCKERFILE {
        return Err(ContextError::TooLarge(path.to_string()));
    }
    let bytes = fs::read(&full).map_err(|source| ContextError::Read {
        path: path.to_string(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| ContextError::NotText(path.to_string()))?;
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| "Dockerfile".into(), |n| n.to_string_lossy().into_owned());
    Ok((text, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpacked(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ContextError> {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("ctx");
        fs::write(&spool, bytes).unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        unpack(&spool, &dest)?;
        let mut out = Vec::new();
        for e in fs::read_dir(&dest).unwrap() {
            let e = e.unwrap();
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            ));
        }
        out.sort();
        Ok(out)
    }

    #[test]
    fn plain_gzip_and_zstd_contexts_unpack_the_same_files() {
        let tar = tar_of(&[("Dockerfile", b"FROM scratch\n"), ("a.txt", b"alpha")]);
        let want = vec![
            ("Dockerfile".to_string(), b"FROM scratch\n".to_vec()),
            ("a.txt".to_string(), b"alpha".to_vec()),
        ];
        assert_eq!(unpacked(&tar).unwrap(), want);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        assert_eq!(unpacked(&gz.finish().unwrap()).unwrap(), want);
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        assert_eq!(unpacked(&zst).unwrap(), want);
    }

    #[test]
    fn bzip2_and_xz_are_refused_by_name() {
        let e = unpacked(b"BZh91AY&SY").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bzip2-compressed build contexts are not supported: send a plain, gzip or zstd tar"
        );
        let e = unpacked(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2]).unwrap_err();
        assert!(e.to_string().starts_with("xz-compressed"), "{e}");
    }

    #[test]
    fn the_dockerfile_is_found_by_its_path_and_stays_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        fs::create_dir_all(ctx.join("sub")).unwrap();
        fs::write(ctx.join("sub/Dockerfile.dev"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ctx.join("evil")).unwrap();
        let (text, name) = read_dockerfile(ctx, "./sub/Dockerfile.dev").unwrap();
        assert_eq!(text, "FROM scratch\n");
        assert_eq!(name, "Dockerfile.dev");
        let e = read_dockerfile(ctx, "Dockerfile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot locate specified Dockerfile: Dockerfile"
        );
        assert_eq!(e.kind(), api::ErrorKind::NotFound);
        // The link resolves to <context>/etc/passwd, which does not exist.
        let e = read_dockerfile(ctx, "evil").unwrap_err();
        assert_eq!(e.to_string(), "cannot locate specified Dockerfile: evil");
        let e = read_dockerfile(ctx, "../../../etc/passwd").unwrap_err();
        assert_eq!(e.kind(), api::ErrorKind::NotFound);
    }
}
