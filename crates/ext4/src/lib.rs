//! A pure-Rust ext4 writer: OCI image layers (uncompressed tar streams) in, one
//! ext4 image file out; and empty ext4 filesystems for volumes and writable layers,
//! formatted or cloned from a formatted template of their size ([`template`]).
//!
//! Its one job is turning layers into a filesystem image. It does not fetch,
//! decompress, verify digests, mount or read images back; it never calls into
//! the rest of the project. We write our own instead of using a crate because
//! the writer is our product (see the crate README for the on-disk layout).
//!
//! ```no_run
//! # fn main() -> Result<(), ext4::Error> {
//! let mut builder = ext4::Ext4Builder::new("rootfs.ext4", ext4::Options::default())?;
//! builder.apply_layer(std::fs::File::open("layer1.tar").unwrap())?;
//! builder.apply_layer(std::fs::File::open("layer2.tar").unwrap())?;
//! let summary = builder.finish()?;
//! println!("{} files, {} bytes", summary.files, summary.image_size);
//! # Ok(()) }
//! ```
//!
//! How it stays fast: file contents are copied from the tar stream straight into
//! large buffers that a writer thread writes sequentially into the data area of
//! the image (one `pwrite` per 8 MiB, never per file or block). Everything whose size is
//! only known at the end (inode tables, bitmaps, directories, the journal) is
//! placed after the data when [`Ext4Builder::finish`] runs; `flex_bg` makes that
//! legal. Unwritten regions stay holes, so the image is sparse. The layout,
//! the ext4 features used and why are in the crate's README.md.
//!
//! The builder is synchronous and `Send`: async callers run it in
//! `spawn_blocking` (and decompress on another thread for speed).

mod disk;
mod hash;
mod image;
mod layer;
pub mod template;
mod tree;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use image::Summary;

/// ext4 block size used for every image (the only size we write).
pub const BLOCK_SIZE: u64 = 4096;

/// Knobs for [`Ext4Builder`] and [`format_empty`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Free space added on top of the content, in bytes.
    pub headroom_bytes: u64,
    /// Free space added on top of the content, as a percentage of the content size.
    pub headroom_percent: u32,
    /// Largest regular file a layer may contain; bigger claims are refused.
    pub max_file_size: u64,
    /// Largest image [`Ext4Builder`] may produce. It sizes the space reserved for
    /// group descriptors at the start of the image (8 GiB of filesystem per 4 KiB).
    pub max_image_size: u64,
    /// Filesystem label (at most 16 bytes).
    pub label: String,
    /// Filesystem UUID; random when `None`. With a UUID and a `timestamp`
    /// given, the same layers always produce a byte-identical image.
    pub uuid: Option<[u8; 16]>,
    /// Seconds since the epoch used for the superblock and for directories a
    /// layer implies without listing them; the current time when `None`.
    pub timestamp: Option<i64>,
    /// One free inode is provisioned per this many bytes of free space.
    pub bytes_per_inode: u64,
    /// Journal size in blocks; the size `mke2fs` would choose when `None`.
    pub journal_blocks: Option<u32>,
    /// `fsync` the image before returning from `finish`/`format_empty`
    /// (one sync for the whole image; never per file).
    pub sync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            headroom_bytes: 64 << 20,
            headroom_percent: 10,
            max_file_size: 64 << 30,
            max_image_size: 1 << 40,
            label: String::new(),
            uuid: None,
            timestamp: None,
            bytes_per_inode: 16384,
            journal_blocks: None,
            sync: false,
        }
    }
}

/// Everything that can go wrong while building an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating or writing the image file failed.
    #[error("cannot write image {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading the tar stream failed or it is malformed.
    #[error("layer {layer}: cannot read tar stream")]
    Tar {
        layer: usize,
        #[source]
        source: std::io::Error,
    },
    /// A path has a `..` component.
    #[error("layer {layer}: {path:?}: path contains '..'")]
    DotDot { layer: usize, path: String },
    /// A path runs through a symlink already in the tree.
    #[error("layer {layer}: {path:?}: path goes through symlink {symlink:?}")]
    ThroughSymlink {
        layer: usize,
        path: String,
        symlink: String,
    },
    /// A path runs through something that is neither a directory nor a symlink.
    #[error("layer {layer}: {path:?}: {parent:?} is not a directory")]
    NotADirectory {
        layer: usize,
        path: String,
        parent: String,
    },
    /// A path component is longer than 255 bytes.
    #[error("layer {layer}: {path:?}: name longer than 255 bytes")]
    NameTooLong { layer: usize, path: String },
    /// A file claims more bytes than [`Options::max_file_size`].
    #[error("layer {layer}: {path:?}: size {size} exceeds the limit of {limit} bytes")]
    FileTooLarge {
        layer: usize,
        path: String,
        size: u64,
        limit: u64,
    },
    /// A hard link names a target that is missing, a directory, or itself.
    #[error("layer {layer}: hard link {path:?} -> {target:?}: {reason}")]
    BadHardLink {
        layer: usize,
        path: String,
        target: String,
        reason: &'static str,
    },
    /// Any other entry we cannot represent or refuse to (unknown type, bad xattr, ...).
    #[error("layer {layer}: {path:?}: {reason}")]
    BadEntry {
        layer: usize,
        path: String,
        reason: String,
    },
    /// The filesystem would exceed a limit (image size, inode count, directory size).
    #[error("filesystem too large: {0}")]
    TooLarge(String),
    /// [`format_empty`] was asked for a size that cannot hold an ext4 filesystem.
    #[error("size of {size} bytes is too small for ext4 (need at least {needed})")]
    TooSmall { size: u64, needed: u64 },
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A previous call failed; the partial image is already removed.
    #[error("builder already failed; its partial image was removed")]
    Failed,
}

impl Error {
    /// Whether the input (a layer, or an argument) is at fault rather than the
    /// host. At an API boundary this is "invalid argument"; the rest (image
    /// I/O, a builder that already failed) is "internal".
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, Error::Io { .. } | Error::Failed)
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds one ext4 image from a sequence of OCI layers.
///
/// The image file is created by [`Ext4Builder::new`] and is complete only after
/// [`Ext4Builder::finish`]. If any call fails, or the builder is dropped before
/// `finish`, the partial file is removed.
pub struct Ext4Builder {
    inner: Option<image::ImageWriter>,
    tree: tree::Tree,
    layers: usize,
    options: Options,
}

impl Ext4Builder {
    /// Creates (or truncates) the image file at `path`.
    pub fn new(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        validate(&options)?;
        let timestamp = options.timestamp.unwrap_or_else(now);
        let inner = image::ImageWriter::create(path.as_ref(), &options)?;
        Ok(Ext4Builder {
            inner: Some(inner),
            tree: tree::Tree::new(timestamp),
            layers: 0,
            options,
        })
    }

    /// Applies one layer (an uncompressed tar stream) on top of the layers so far.
    /// File contents are streamed into the image as they are read.
    pub fn apply_layer(&mut self, reader: impl Read) -> Result<()> {
        let writer = self.inner.as_mut().ok_or(Error::Failed)?;
        self.layers += 1;
        let result = layer::apply(&mut self.tree, writer, reader, self.layers, &self.options);
        if result.is_err() {
            // Dropping the writer removes the partial image.
            self.inner = None;
        }
        result
    }

    /// Lays out the metadata, writes it and returns what the image holds.
    pub fn finish(mut self) -> Result<Summary> {
        let writer = self.inner.take().ok_or(Error::Failed)?;
        writer.finish(&mut self.tree, &self.options, None)
    }
}

/// Writes an empty ext4 filesystem of exactly `size` bytes (rounded down to
/// whole blocks) at `path`: root and lost+found directories and a journal,
/// everything else sparse.
pub fn format_empty(path: impl AsRef<Path>, size: u64, options: &Options) -> Result<Summary> {
    validate(options)?;
    let timestamp = options.timestamp.unwrap_or_else(now);
    let mut tree = tree::Tree::new(timestamp);
    let writer = image::ImageWriter::create_fixed(path.as_ref(), size)?;
    writer.finish(&mut tree, options, Some(size / BLOCK_SIZE))
}

fn validate(options: &Options) -> Result<()> {
    if options.label.len() > 16 {
        return Err(Error::InvalidOption(format!(
            "label {:?} is longer than 16 bytes",
            options.label
        )));
    }
    if options.bytes_per_inode < BLOCK_SIZE {
        return Err(Error::InvalidOption(format!(
            "bytes_per_inode {} is smaller than the block size",
            options.bytes_per_inode
        )));
    }
    if options.max_image_size < 16 << 20 || options.max_image_size > 1 << 50 {
        return Err(Error::InvalidOption(format!(
            "max_image_size {} is outside 16 MiB..1 PiB",
            options.max_image_size
        )));
    }
    if let Some(j) = options.journal_blocks
        && !(1024..=1 << 20).contains(&j)
    {
        return Err(Error::InvalidOption(format!(
            "journal_blocks {j} is outside 1024..=1048576"
        )));
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
