//! The image file: block allocation, the streaming data writer, and the final
//! layout pass that writes inodes, directories, bitmaps, descriptors, the
//! journal and the superblocks after all file data is in place.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::disk::{self, BLOCKS_PER_GROUP, BS, DESC_SIZE, INODE_SIZE};
use crate::tree::{Kind, NodeId, ROOT, Run, Tree, Xattr};
use crate::{Error, Options, Result};

/// What an image holds, returned by `finish` and `format_empty`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Regular files (inodes, so hard links count once).
    pub files: u64,
    /// Directories, including the root and lost+found.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Device nodes, fifos and sockets.
    pub specials: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
    /// Inodes in use (including the reserved ones).
    pub inodes_used: u64,
    /// Apparent size of the image file in bytes (it is sparse).
    pub image_size: u64,
}

/// Hands out blocks in increasing order, stepping over reserved ranges.
#[derive(Clone)]
pub(crate) struct Alloc {
    pub next: u64,
    /// Sorted, disjoint [start, end) ranges that must not be allocated.
    reserved: Vec<(u64, u64)>,
}

impl Alloc {
    fn skip_reserved(&mut self) {
        for &(s, e) in &self.reserved {
            if self.next >= s && self.next < e {
                self.next = e;
            }
        }
    }

    /// `n` blocks as extents of at most 32768 blocks, around reserved ranges.
    pub fn runs(&mut self, mut n: u64) -> Vec<Run> {
        let mut runs = Vec::new();
        while n > 0 {
            self.skip_reserved();
            let mut len = n.min(disk::MAX_EXTENT_LEN);
            for &(s, _) in &self.reserved {
                if s > self.next {
                    len = len.min(s - self.next);
                }
            }
            runs.push(Run {
                start: self.next,
                len: len as u32,
            });
            self.next += len;
            n -= len;
        }
        runs
    }

    /// `n` contiguous blocks.
    pub fn contig(&mut self, n: u64) -> u64 {
        loop {
            self.skip_reserved();
            let start = self.next;
            let clash = self
                .reserved
                .iter()
                .find(|&&(s, e)| start < e && start + n > s);
            match clash {
                Some(&(_, e)) => self.next = e,
                None => {
                    self.next += n;
                    return start;
                }
            }
        }
    }
}

/// Buffers writes to consecutive blocks and hands full buffers to a writer
/// thread, which issues them as large `pwrite`s. Copying into the page cache
/// (most of the cost) thus overlaps with reading the tar stream. A fixed pool
/// of buffers bounds memory and applies back-pressure.
struct BlockWriter {
    /// Kept for `set_len`, hole punching and `fsync` after [`Self::barrier`].
    file: Arc<File>,
    buf: Box<[u8]>,
    filled: usize,
    /// Block number of `buf[0]`.
    start: u64,
    to_writer: Option<SyncSender<WriteJob>>,
    free: Receiver<Box<[u8]>>,
    /// The first write error of the writer thread.
    error: Arc<Mutex<Option<io::Error>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Free buffers already taken back from the writer thread.
    spare: Vec<Box<[u8]>>,
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written what it has.
        self.to_writer = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `data` at block `start`, skipping whole blocks of zeros: the file is
/// new, so they read back as zeros and stay holes (sparse files in layers stay
/// sparse on the host).
fn write_skipping_zeros(file: &File, data: &[u8], start: u64) -> io::Result<()> {
    let base = start * BS as u64;
    let mut run_start: Option<usize> = None;
    let mut off = 0;
    while off < data.len() {
        let end = (off + BS).min(data.len());
        let zero = data[off..end].iter().all(|&b| b == 0);
        match (zero, run_start) {
            (true, Some(s)) => {
                file.write_all_at(&data[s..off], base + s as u64)?;
                run_start = None;
            }
            (false, None) => run_start = Some(off),
            _ => {}
        }
        off = end;
    }
    if let Some(s) = run_start {
        file.write_all_at(&data[s..], base + s as u64)?;
    }
    Ok(())
}

/// A buffer, how many bytes of it to write, and the block they start at.
type WriteJob = (Box<[u8]>, usize, u64);

const BUF_SIZE: usize = 8 << 20;
/// Buffers in flight besides the one being filled.
const POOL: usize = 2;

impl BlockWriter {
    fn new(file: File, start: u64) -> Self {
        let file = Arc::new(file);
        let (to_writer, jobs) = sync_channel::<WriteJob>(POOL);
        let (give_back, free) = sync_channel::<Box<[u8]>>(POOL + 1);
        for _ in 0..POOL {
            // Cannot fail: the channel has room for every buffer of the pool.
            let _ = give_back.send(vec![0u8; BUF_SIZE].into_boxed_slice());
        }
        let error = Arc::new(Mutex::new(None));
        let thread = {
            let file = Arc::clone(&file);
            let error = Arc::clone(&error);
            std::thread::spawn(move || {
                for (buf, filled, start) in jobs {
                    if let Err(e) = write_skipping_zeros(&file, &buf[..filled], start) {
                        let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(e);
                    }
                    if give_back.send(buf).is_err() {
                        return;
                    }
                }
            })
        };
        BlockWriter {
            file,
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            filled: 0,
            start,
            to_writer: Some(to_writer),
            free,
            error,
            thread: Some(thread),
            spare: Vec::new(),
        }
    }

    fn take_error(&self) -> io::Result<()> {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn writer_gone() -> io::Error {
        io::Error::other("image writer thread stopped")
    }

    /// A free buffer: a spare one, or the next the writer thread gives back.
    fn next_buffer(&mut self) -> io::Result<Box<[u8]>> {
        match self.spare.pop() {
            Some(b) => Ok(b),
            None => self.free.recv().map_err(|_| Self::writer_gone()),
        }
    }

    /// Hands the filled buffer to the writer thread and continues in a free one.
    fn flush(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            let next = self.next_buffer()?;
            let full = std::mem::replace(&mut self.buf, next);
            self.to_writer
                .as_ref()
                .ok_or_else(Self::writer_gone)?
                .send((full, self.filled, self.start))
                .map_err(|_| Self::writer_gone())?;
            self.start += (self.filled / BS) as u64;
            self.filled = 0;
        }
        self.take_error()
    }

    /// Flushes and waits until every write has reached the file.
    fn barrier(&mut self) -> io::Result<()> {
        self.flush()?;
        // Every pool buffer back in hand means no write is in flight.
        while self.spare.len() < POOL {
            let b = self.free.recv().map_err(|_| Self::writer_gone())?;
            self.spare.push(b);
        }
        self.take_error()
    }

    /// Directs the next bytes to `block`. The buffer must end on a block boundary.
    fn seek_block(&mut self, block: u64) -> io::Result<()> {
        debug_assert_eq!(self.filled % BS, 0);
        if self.start + (self.filled / BS) as u64 != block {
            self.flush()?;
            self.start = block;
        }
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.filled == self.buf.len() {
                self.flush()?;
            }
            let n = data.len().min(self.buf.len() - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
        }
        Ok(())
    }

    /// Copies exactly `n` bytes from `r` into the buffer.
    /// Copies exactly `n` bytes from `r` into the buffer. Errors say which
    /// side failed: [`CopyError::Read`] the layer, [`CopyError::Write`] the image.
    fn copy_from(&mut self, r: &mut impl Read, mut n: u64) -> Result<(), CopyError> {
        while n > 0 {
            if self.filled == self.buf.len() {
                self.flush().map_err(CopyError::Write)?;
            }
            let room = (self.buf.len() - self.filled).min(usize::try_from(n).unwrap_or(usize::MAX));
            let got = match r.read(&mut self.buf[self.filled..self.filled + room]) {
                Ok(0) => {
                    return Err(CopyError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tar entry ended before its stated size",
                    )));
                }
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.filled += got;
            n -= got as u64;
        }
        Ok(())
    }

    fn pad_to_block(&mut self) {
        let rem = self.filled % BS;
        if rem != 0 {
            let end = self.filled + BS - rem;
            self.buf[self.filled..end].fill(0);
            self.filled = end;
        }
    }
}

/// Why streaming a file's content failed.
pub(crate) enum CopyError {
    /// Reading the layer failed or it ended early.
    Read(io::Error),
    /// Writing the image failed.
    Write(io::Error),
}

/// The open image file while layers stream into it. Dropping it before
/// `finish` completes removes the file.
pub(crate) struct ImageWriter {
    path: PathBuf,
    out: BlockWriter,
    pub alloc: Alloc,
    /// Blocks reserved after the superblock for group descriptors.
    gdt_reserve: u64,
    done: bool,
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ImageWriter {
    /// An image whose size is decided at the end, at most `max_image_size`.
    pub fn create(path: &Path, options: &Options) -> Result<Self> {
        let groups = (options.max_image_size / BS as u64).div_ceil(BLOCKS_PER_GROUP);
        Self::open(path, gdt_blocks(groups))
    }

    /// An image of exactly `size` bytes.
    pub fn create_fixed(path: &Path, size: u64) -> Result<Self> {
        let groups = (size / BS as u64).div_ceil(BLOCKS_PER_GROUP).max(1);
        Self::open(path, gdt_blocks(groups))
    }

    fn open(path: &Path, gdt_reserve: u64) -> Result<Self> {
        // A new image is the owner's alone: it holds a container's or a volume's data.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?;
        let first = 1 + gdt_reserve;
        // Group 1 keeps a backup superblock and descriptor table.
        let reserved = vec![(BLOCKS_PER_GROUP, BLOCKS_PER_GROUP + 1 + gdt_reserve)];
        Ok(ImageWriter {
            path: path.to_owned(),
            out: BlockWriter::new(file, first),
            alloc: Alloc {
                next: first,
                reserved,
            },
            gdt_reserve,
            done: false,
        })
    }

    pub fn io_err(&self, source: io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Streams `size` bytes of file content from `r` into freshly allocated
    /// blocks and returns them.
    pub fn write_file(&mut self, r: &mut impl Read, size: u64) -> Result<Vec<Run>, CopyError> {
        let runs = self.alloc.runs(size.div_ceil(BS as u64));
        let mut left = size;
        for run in &runs {
            self.out.seek_block(run.start).map_err(CopyError::Write)?;
            let n = left.min(u64::from(run.len) * BS as u64);
            self.out.copy_from(r, n)?;
            left -= n;
        }
        self.out.pad_to_block();
        Ok(runs)
    }

    /// Writes all metadata and completes the image. `fixed_blocks` gives the
    /// exact size for `format_empty`; otherwise size = content + headroom.
    pub fn finish(
        mut self,
        tree: &mut Tree,
        options: &Options,
        fixed_blocks: Option<u64>,
    ) -> Result<Summary> {
        self.out.flush().map_err(|e| self.io_err(e))?;
        let summary = layout_and_write(&mut self, tree, options, fixed_blocks)?;
        self.done = true;
        Ok(summary)
    }
}

fn gdt_blocks(groups: u64) -> u64 {
    (groups * DESC_SIZE as u64).div_ceil(BS as u64)
}

/// Per-inode placement decided in the layout pass.
#[derive(Default)]
struct Placed {
    /// Directory or slow-symlink content, written at `runs`.
    content: Vec<u8>,
    runs: Vec<Run>,
    indexed: bool,
    xattr_block: u64,
    xattr_data: Vec<u8>,
    leaves: Vec<u64>,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // No entropy source: derive something unique enough from time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id()) << 64;
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
    }
    b
}

fn file_type(kind: &Kind) -> (u16, u8) {
    match kind {
        Kind::File { .. } => (disk::S_IFREG, disk::FT_REG),
        Kind::Dir(_) => (disk::S_IFDIR, disk::FT_DIR),
        Kind::Symlink(_) => (disk::S_IFLNK, disk::FT_SYMLINK),
        Kind::CharDev { .. } => (disk::S_IFCHR, disk::FT_CHR),
        Kind::BlockDev { .. } => (disk::S_IFBLK, disk::FT_BLK),
        Kind::Fifo => (disk::S_IFIFO, disk::FT_FIFO),
        Kind::Free => (0, 0),
    }
}

/// A bitmap over all blocks of the filesystem.
struct Bits(Vec<u64>);

impl Bits {
    fn set_range(&mut self, start: u64, len: u64) {
        let mut b = start;
        let end = start + len;
        while b < end {
            if b.is_multiple_of(64) && end - b >= 64 {
                self.0[(b / 64) as usize] = u64::MAX;
                b += 64;
            } else {
                self.0[(b / 64) as usize] |= 1 << (b % 64);
                b += 1;
            }
        }
    }
}

fn layout_and_write(
    w: &mut ImageWriter,
    tree: &mut Tree,
    options: &Options,
    fixed_blocks: Option<u64>,
) -> Result<Summary> {
    let uuid = options.uuid.unwrap_or_else(|| {
        // A version 4 (random) UUID.
        let mut u = random_bytes::<16>();
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        u
    });
    // With a given UUID the image is reproducible: derive the hash seed from it.
    let seed_bytes: [u8; 16] = match options.uuid {
        Some(u) => std::array::from_fn(|i| u[15 - i] ^ 0xa5),
        None => random_bytes::<16>(),
    };
    let mut seed = [0u32; 4];
    for (i, w) in seed.iter_mut().enumerate() {
        *w = u32::from_le_bytes([
            seed_bytes[4 * i],
            seed_bytes[4 * i + 1],
            seed_bytes[4 * i + 2],
            seed_bytes[4 * i + 3],
        ]);
    }

    // lost+found: e2fsck insists on it. A layer's own lost+found directory is kept.
    let lf = match tree.lookup(ROOT, b"lost+found") {
        Some(d) if matches!(tree.node(d.node).kind, Kind::Dir(_)) => Some((d.node, false)),
        Some(_) => None,
        None => {
            let mut meta = tree.implicit_dir_meta();
            meta.perm = 0o700;
            let id = tree.add(meta, Kind::Dir(Default::default()));
            tree.link(ROOT, b"lost+found", id, 0);
            Some((id, true))
        }
    };

    // Inode numbers: root 2, lost+found 11, then every directory's children in
    // name order, depth first, so siblings sit together in the inode table.
    let mut ino_of = vec![0u32; tree.nodes.len()];
    let mut parent_of = vec![0u32; tree.nodes.len()];
    ino_of[ROOT as usize] = disk::ROOT_INO;
    parent_of[ROOT as usize] = disk::ROOT_INO;
    let mut next_ino = disk::FIRST_INO;
    if let Some((id, _)) = lf {
        ino_of[id as usize] = disk::FIRST_INO;
        parent_of[id as usize] = disk::ROOT_INO;
        next_ino += 1;
    }
    // node_at[ino - 1] for every assigned inode.
    let mut node_at: Vec<Option<NodeId>> = vec![None; disk::FIRST_INO as usize];
    node_at[1] = Some(ROOT);
    if let Some((id, _)) = lf {
        node_at[10] = Some(id);
    }
    let mut stack = vec![ROOT];
    while let Some(dir) = stack.pop() {
        let Some(entries) = tree.entries(dir) else {
            continue;
        };
        let mut subdirs = Vec::new();
        for d in entries.values() {
            let i = d.node as usize;
            let is_dir = matches!(tree.node(d.node).kind, Kind::Dir(_));
            if ino_of[i] == 0 {
                ino_of[i] = next_ino;
                node_at.push(Some(d.node));
                next_ino = next_ino
                    .checked_add(1)
                    .ok_or_else(|| Error::TooLarge("more than 2^32 inodes".into()))?;
                if is_dir {
                    parent_of[i] = ino_of[dir as usize];
                    subdirs.push(d.node);
                }
            } else if is_dir && d.node != ROOT && ino_of[i] != disk::FIRST_INO {
                // Invariant: directories are never hard linked (layer.rs refuses
                // it), so each has exactly one name. Guard against a cycle anyway.
                return Err(Error::TooLarge("directory reachable by two paths".into()));
            }
        }
        if lf.is_some_and(|(id, _)| id == dir) {
            continue;
        }
        stack.extend(subdirs.into_iter().rev());
    }
    // lost+found's own children (a layer may have put some there).
    if let Some((id, _)) = lf
        && tree.entries(id).is_some_and(|e| !e.is_empty())
    {
        let mut stack2 = vec![id];
        while let Some(dir) = stack2.pop() {
            let Some(entries) = tree.entries(dir) else {
                continue;
            };
            let mut subdirs = Vec::new();
            for d in entries.values() {
                let i = d.node as usize;
                if ino_of[i] == 0 {
                    ino_of[i] = next_ino;
                    node_at.push(Some(d.node));
                    next_ino += 1;
                    if matches!(tree.node(d.node).kind, Kind::Dir(_)) {
                        parent_of[i] = ino_of[dir as usize];
                        subdirs.push(d.node);
                    }
                }
            }
            stack2.extend(subdirs.into_iter().rev());
        }
    }
    let used_inodes = u64::from(next_ino - 1);

    // Content that lives in metadata blocks: directories, slow symlinks, xattr blocks.
    let mut placed: Vec<Placed> = Vec::with_capacity(node_at.len());
    let mut subdir_count = vec![0u32; node_at.len()];
    for (idx, slot) in node_at.iter().enumerate() {
        let mut p = Placed::default();
        let Some(id) = *slot else {
            placed.push(p);
            continue;
        };
        let node = tree.node(id);
        let ino = idx as u32 + 1;
        match &node.kind {
            Kind::Dir(entries) => {
                let list: Vec<disk::DirEntry<'_>> = entries
                    .iter()
                    .map(|(name, d)| disk::DirEntry {
                        name,
                        ino: ino_of[d.node as usize],
                        file_type: file_type(&tree.node(d.node).kind).1,
                    })
                    .collect();
                subdir_count[idx] =
                    list.iter().filter(|e| e.file_type == disk::FT_DIR).count() as u32;
                let min_blocks = if lf.is_some_and(|(l, ours)| l == id && ours) {
                    4
                } else {
                    1
                };
                let blocks =
                    disk::dir_blocks(ino, parent_of[id as usize], &list, &seed, min_blocks)
                        .map_err(Error::TooLarge)?;
                p.content = blocks.data;
                p.indexed = blocks.indexed;
            }
            Kind::Symlink(target) if target.len() >= 60 => {
                let mut block = vec![0u8; BS];
                block[..target.len()].copy_from_slice(target);
                p.content = block;
            }
            _ => {}
        }
        if !node.meta.xattrs.is_empty() {
            let mut xs: Vec<&Xattr> = node.meta.xattrs.iter().collect();
            disk::sort_xattrs(&mut xs);
            if !disk::xattrs_fit_inline(&xs) {
                // Caller validated that they fit a block (layer.rs checks on input).
                p.xattr_data = disk::xattr_block(&xs);
            }
        }
        placed.push(p);
    }

    // Allocate metadata content after the file data.
    let mut alloc = w.alloc.clone();
    for p in placed.iter_mut() {
        if !p.content.is_empty() {
            p.runs = alloc.runs((p.content.len() / BS) as u64);
        }
        if !p.xattr_data.is_empty() {
            p.xattr_block = alloc.contig(1);
        }
    }
    for (idx, p) in placed.iter_mut().enumerate() {
        let nruns = match node_at[idx].map(|id| &tree.node(id).kind) {
            Some(Kind::File { runs, .. }) => runs.len(),
            _ => p.runs.len(),
        };
        let leaves = disk::extent_leaves_needed(nruns);
        if leaves > 4 {
            return Err(Error::TooLarge(format!(
                "inode {} needs {nruns} extents",
                idx + 1
            )));
        }
        p.leaves = (0..leaves).map(|_| alloc.contig(1)).collect();
    }
    let content_end = alloc.next;

    // Size the filesystem: content, group metadata, journal, headroom.
    let content_blocks = content_end;
    let headroom_blocks = (options.headroom_bytes
        + content_blocks * BS as u64 * u64::from(options.headroom_percent) / 100)
        .div_ceil(BS as u64);
    let journal_blocks = u64::from(options.journal_blocks.unwrap_or_else(|| {
        disk::default_journal_blocks(fixed_blocks.unwrap_or(content_end + headroom_blocks))
    }));
    let mut groups = match fixed_blocks {
        Some(total) => total.div_ceil(BLOCKS_PER_GROUP).max(1),
        None => (content_end + headroom_blocks)
            .div_ceil(BLOCKS_PER_GROUP)
            .max(1),
    };
    // A fixed size whose last group would be a sliver loses that sliver.
    let fixed_blocks = fixed_blocks.map(|t| {
        if groups > 1 && t % BLOCKS_PER_GROUP != 0 && t % BLOCKS_PER_GROUP < 256 {
            groups -= 1;
            groups * BLOCKS_PER_GROUP
        } else {
            t
        }
    });
    let wanted_inodes = match fixed_blocks {
        Some(total) => (total * BS as u64 / options.bytes_per_inode).min(groups * 32768),
        None => used_inodes + headroom_blocks * BS as u64 / options.bytes_per_inode,
    }
    .max(used_inodes)
    .max(64);
    if wanted_inodes > groups * 32768 && fixed_blocks.is_some() {
        return Err(Error::TooSmall {
            size: fixed_blocks.unwrap_or(0) * BS as u64,
            needed: wanted_inodes.div_ceil(32768) * BLOCKS_PER_GROUP * BS as u64,
        });
    }

    let plan = loop {
        groups = groups.max(wanted_inodes.div_ceil(32768));
        let ipg = wanted_inodes.div_ceil(groups).div_ceil(16) * 16;
        let itable_blocks = ipg * INODE_SIZE as u64 / BS as u64;
        let mut a = alloc.clone();
        let block_bitmaps = a.contig(groups);
        let inode_bitmaps = a.contig(groups);
        let itables: Vec<u64> = (0..groups).map(|_| a.contig(itable_blocks)).collect();
        let journal_runs = a.runs(journal_blocks);
        let jleaves: Vec<u64> = (0..disk::extent_leaves_needed(journal_runs.len()))
            .map(|_| a.contig(1))
            .collect();
        let meta_end = a.next;
        let mut total = match fixed_blocks {
            Some(t) if meta_end > t => {
                return Err(Error::TooSmall {
                    size: t * BS as u64,
                    needed: meta_end * BS as u64,
                });
            }
            Some(t) => t,
            None => {
                let t = meta_end + headroom_blocks;
                let need = t.div_ceil(BLOCKS_PER_GROUP);
                if need > groups {
                    groups = need;
                    continue;
                }
                // Fill up to the group count (inodes may have asked for more
                // groups) and keep the last group from being a sliver.
                let t = t.max((groups - 1) * BLOCKS_PER_GROUP + 256);
                let last = t % BLOCKS_PER_GROUP;
                if last != 0 && last < 256 {
                    t + 256 - last
                } else {
                    t
                }
            }
        };
        total = total.min(groups * BLOCKS_PER_GROUP);
        break Plan {
            groups,
            ipg,
            itable_blocks,
            block_bitmaps,
            inode_bitmaps,
            itables,
            journal_runs,
            jleaves,
            total,
        };
    };
    if plan.total * BS as u64
        > options
            .max_image_size
            .max(fixed_blocks.unwrap_or(0) * BS as u64)
    {
        return Err(Error::TooLarge(format!(
            "{} bytes needed, max_image_size is {}",
            plan.total * BS as u64,
            options.max_image_size
        )));
    }
    let gdt = gdt_blocks(plan.groups);
    if gdt > w.gdt_reserve {
        return Err(Error::TooLarge(
            "group descriptor table outgrew its reserve".into(),
        ));
    }
    let total_inodes = plan.groups * plan.ipg;
    if total_inodes > u64::from(u32::MAX) {
        return Err(Error::TooLarge(format!("{total_inodes} inodes")));
    }

    write_image(
        w,
        tree,
        options,
        &plan,
        &placed,
        &node_at,
        &subdir_count,
        uuid,
        seed,
        used_inodes,
    )
}

struct Plan {
    groups: u64,
    ipg: u64,
    itable_blocks: u64,
    block_bitmaps: u64,
    inode_bitmaps: u64,
    itables: Vec<u64>,
    journal_runs: Vec<Run>,
    jleaves: Vec<u64>,
    total: u64,
}

#[allow(clippy::too_many_arguments)]
fn write_image(
    w: &mut ImageWriter,
    tree: &Tree,
    options: &Options,
    plan: &Plan,
    placed: &[Placed],
    node_at: &[Option<NodeId>],
    subdir_count: &[u32],
    uuid: [u8; 16],
    seed: [u32; 4],
    used_inodes: u64,
) -> Result<Summary> {
    let time = options.timestamp.unwrap_or(tree.default_time) as u32;
    let groups = plan.groups;
    let gdt = gdt_blocks(groups);
    let total = plan.total;
    let mut used = Bits(vec![0u64; total.div_ceil(64) as usize]);
    used.set_range(0, 1 + gdt);
    let backup_bgs = if groups > 1 { [1u32, 0] } else { [0, 0] };
    if groups > 1 {
        used.set_range(BLOCKS_PER_GROUP, 1 + gdt);
    }
    used.set_range(plan.block_bitmaps, groups);
    used.set_range(plan.inode_bitmaps, groups);
    for &t in &plan.itables {
        used.set_range(t, plan.itable_blocks);
    }
    for r in &plan.journal_runs {
        used.set_range(r.start, u64::from(r.len));
    }
    for &l in &plan.jleaves {
        used.set_range(l, 1);
    }

    let mut summary = Summary {
        files: 0,
        dirs: 0,
        symlinks: 0,
        specials: 0,
        bytes: 0,
        inodes_used: used_inodes,
        image_size: total * BS as u64,
    };

    // Inode table contents for inodes 1..=used_inodes.
    // Whole blocks: 16 inodes per block.
    let mut itable = vec![0u8; used_inodes.div_ceil(16) as usize * BS];
    let mut dirs_in_group = vec![0u32; groups as usize];
    let mut leaf_writes: Vec<(u64, Vec<u8>)> = Vec::new();
    for (idx, slot) in node_at.iter().enumerate() {
        let Some(id) = *slot else { continue };
        let node = tree.node(id);
        let p = &placed[idx];
        let (ftype, _) = file_type(&node.kind);
        let mut blocks = p.leaves.len() as u64;
        let mut size = 0u64;
        let mut links = node.links;
        if links > 65000 && !matches!(node.kind, Kind::Dir(_)) {
            return Err(Error::TooLarge(format!(
                "inode {} has {links} hard links, more than ext4's 65000",
                idx + 1
            )));
        }
        let iblock = match &node.kind {
            Kind::File { size: s, runs } => {
                size = *s;
                summary.files += 1;
                summary.bytes += s;
                for r in runs {
                    used.set_range(r.start, u64::from(r.len));
                    blocks += u64::from(r.len);
                }
                let (root, leaves) = disk::extent_tree(runs, &p.leaves);
                leaf_writes.extend(p.leaves.iter().copied().zip(leaves));
                disk::IBlock::Extents(root)
            }
            Kind::Dir(_) | Kind::Symlink(_) if !p.runs.is_empty() => {
                if let Kind::Symlink(t) = &node.kind {
                    size = t.len() as u64;
                    summary.symlinks += 1;
                } else {
                    size = p.content.len() as u64;
                    summary.dirs += 1;
                    dirs_in_group[idx / plan.ipg as usize] += 1;
                    links = 2 + subdir_count[idx];
                    if links >= 65000 {
                        links = 1; // dir_nlink: "many"
                    }
                }
                for r in &p.runs {
                    used.set_range(r.start, u64::from(r.len));
                    blocks += u64::from(r.len);
                }
                let (root, leaves) = disk::extent_tree(&p.runs, &p.leaves);
                leaf_writes.extend(p.leaves.iter().copied().zip(leaves));
                disk::IBlock::Extents(root)
            }
            Kind::Symlink(t) => {
                summary.symlinks += 1;
                size = t.len() as u64;
                let mut raw = [0u8; 60];
                raw[..t.len()].copy_from_slice(t);
                disk::IBlock::Raw(raw)
            }
            Kind::CharDev { major, minor } | Kind::BlockDev { major, minor } => {
                summary.specials += 1;
                disk::IBlock::Raw(disk::device_iblock(*major, *minor))
            }
            Kind::Fifo => {
                summary.specials += 1;
                disk::IBlock::Raw([0u8; 60])
            }
            Kind::Dir(_) | Kind::Free => continue,
        };
        for &l in &p.leaves {
            used.set_range(l, 1);
        }
        if p.xattr_block != 0 {
            used.set_range(p.xattr_block, 1);
            blocks += 1;
        }
        let mut inline: Vec<&Xattr> = Vec::new();
        if p.xattr_block == 0 && !node.meta.xattrs.is_empty() {
            inline = node.meta.xattrs.iter().collect();
            disk::sort_xattrs(&mut inline);
        }
        let inode = disk::Inode {
            mode: ftype | node.meta.perm,
            uid: node.meta.uid,
            gid: node.meta.gid,
            size,
            atime: node.meta.atime,
            ctime: node.meta.ctime,
            mtime: node.meta.mtime,
            links: links.min(65000) as u16,
            blocks,
            iblock,
            indexed_dir: p.indexed,
            xattr_block: p.xattr_block,
            inline_xattrs: &inline,
        };
        inode.encode(&mut itable[idx * INODE_SIZE..(idx + 1) * INODE_SIZE]);
    }

    // The journal inode.
    let journal_blocks: u64 = plan.journal_runs.iter().map(|r| u64::from(r.len)).sum();
    let (jroot, jleaf_blocks) = disk::extent_tree(&plan.journal_runs, &plan.jleaves);
    leaf_writes.extend(plan.jleaves.iter().copied().zip(jleaf_blocks));
    let jtime = crate::tree::Ts {
        sec: i64::from(time),
        nsec: 0,
    };
    let journal_size = journal_blocks * BS as u64;
    disk::Inode {
        mode: disk::S_IFREG | 0o600,
        uid: 0,
        gid: 0,
        size: journal_size,
        atime: jtime,
        ctime: jtime,
        mtime: jtime,
        links: 1,
        blocks: journal_blocks + plan.jleaves.len() as u64,
        iblock: disk::IBlock::Extents(jroot),
        indexed_dir: false,
        xattr_block: 0,
        inline_xattrs: &[],
    }
    .encode(
        &mut itable[(disk::JOURNAL_INO as usize - 1) * INODE_SIZE
            ..disk::JOURNAL_INO as usize * INODE_SIZE],
    );

    // Write everything after the data: directory and symlink blocks, xattr
    // blocks, extent leaves, inode tables, journal superblock.
    let mut meta_writes: Vec<(u64, &[u8])> = Vec::new();
    for p in placed {
        let mut off = 0;
        for r in &p.runs {
            let len = r.len as usize * BS;
            meta_writes.push((r.start, &p.content[off..off + len]));
            off += len;
        }
        if p.xattr_block != 0 {
            meta_writes.push((p.xattr_block, &p.xattr_data));
        }
    }
    for (b, data) in &leaf_writes {
        meta_writes.push((*b, data));
    }
    let per_group = plan.ipg as usize * INODE_SIZE;
    for (g, chunk) in itable.chunks(per_group).enumerate() {
        meta_writes.push((plan.itables[g], chunk));
    }
    let jsb = disk::journal_superblock(journal_blocks as u32, &uuid);
    if let Some(first) = plan.journal_runs.first() {
        meta_writes.push((first.start, &jsb));
    }

    // Bitmaps and group descriptors.
    let mut bitmap_blocks: Vec<u8> = vec![0u8; groups as usize * BS];
    let mut inode_bitmaps: Vec<u8> = vec![0u8; groups as usize * BS];
    let mut gdt_bytes = vec![0u8; gdt as usize * BS];
    let mut free_total = 0u64;
    for g in 0..groups {
        let first = g * BLOCKS_PER_GROUP;
        let count = (total - first).min(BLOCKS_PER_GROUP);
        let bm = &mut bitmap_blocks[g as usize * BS..(g as usize + 1) * BS];
        // Groups start on multiples of 64 blocks: copy whole words.
        let words = &used.0[(first / 64) as usize..];
        for (i, chunk) in bm.chunks_mut(8).enumerate() {
            let w = words.get(i).copied().unwrap_or(0);
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        let mut in_use = 0u64;
        for (i, chunk) in bm.chunks(8).enumerate() {
            let lo = i as u64 * 64;
            if lo >= count {
                break;
            }
            let mut w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if count - lo < 64 {
                w &= (1u64 << (count - lo)) - 1;
            }
            in_use += u64::from(w.count_ones());
        }
        let free = count - in_use;
        // Blocks past the end of the filesystem are marked in use.
        for i in count..BLOCKS_PER_GROUP {
            bm[(i / 8) as usize] |= 1 << (i % 8);
        }
        free_total += free;
        let ib = &mut inode_bitmaps[g as usize * BS..(g as usize + 1) * BS];
        let first_ino = g * plan.ipg; // zero-based
        let in_use = used_inodes.saturating_sub(first_ino).min(plan.ipg);
        for i in 0..(BS as u64 * 8) {
            if i < in_use || i >= plan.ipg {
                ib[(i / 8) as usize] |= 1 << (i % 8);
            }
        }
        disk::GroupDesc {
            block_bitmap: plan.block_bitmaps + g,
            inode_bitmap: plan.inode_bitmaps + g,
            inode_table: plan.itables[g as usize],
            free_blocks: free as u32,
            free_inodes: (plan.ipg - in_use) as u32,
            used_dirs: dirs_in_group[g as usize],
        }
        .encode(&mut gdt_bytes[g as usize * DESC_SIZE..(g as usize + 1) * DESC_SIZE]);
    }
    for g in 0..groups as usize {
        meta_writes.push((
            plan.block_bitmaps + g as u64,
            &bitmap_blocks[g * BS..(g + 1) * BS],
        ));
        meta_writes.push((
            plan.inode_bitmaps + g as u64,
            &inode_bitmaps[g * BS..(g + 1) * BS],
        ));
    }

    let mut label = [0u8; 16];
    label[..options.label.len()].copy_from_slice(options.label.as_bytes());
    let sb = disk::Superblock {
        blocks: total,
        free_blocks: free_total,
        inodes: (groups * plan.ipg) as u32,
        free_inodes: (groups * plan.ipg - used_inodes) as u32,
        inodes_per_group: plan.ipg as u32,
        time,
        uuid,
        hash_seed: seed,
        label,
        backup_bgs,
        journal_iblock: jroot,
        journal_size,
    };
    let mut head = vec![0u8; BS];
    head[1024..2048].copy_from_slice(&sb.encode(0));
    meta_writes.push((0, &head));
    meta_writes.push((1, &gdt_bytes));
    let mut backup = vec![0u8; BS];
    if groups > 1 {
        backup[..1024].copy_from_slice(&sb.encode(1));
        meta_writes.push((BLOCKS_PER_GROUP, &backup));
        meta_writes.push((BLOCKS_PER_GROUP + 1, &gdt_bytes));
    }

    // Issue writes in block order so they coalesce; all-zero blocks stay holes.
    meta_writes.sort_by_key(|(b, _)| *b);
    for (block, data) in meta_writes {
        for (i, chunk) in data.chunks(BS).enumerate() {
            if chunk.iter().all(|&b| b == 0) {
                continue;
            }
            w.out
                .seek_block(block + i as u64)
                .and_then(|_| w.out.write(chunk))
                .map_err(|e| w.io_err(e))?;
        }
    }
    w.out.barrier().map_err(|e| w.io_err(e))?;
    w.out
        .file
        .set_len(total * BS as u64)
        .map_err(|e| w.io_err(e))?;
    punch_holes(&w.out.file, &tree.freed).map_err(|e| w.io_err(e))?;
    if options.sync {
        w.out.file.sync_all().map_err(|e| w.io_err(e))?;
    }
    Ok(summary)
}

/// Returns the blocks of deleted files to the sparse file's holes.
fn punch_holes(file: &File, freed: &[Run]) -> io::Result<()> {
    let mut runs: Vec<Run> = freed.to_vec();
    runs.sort_by_key(|r| r.start);
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for r in runs {
        match merged.last_mut() {
            Some((s, l)) if *s + *l == r.start => *l += u64::from(r.len),
            _ => merged.push((r.start, u64::from(r.len))),
        }
    }
    for (start, len) in merged {
        punch(file, start * BS as u64, len * BS as u64)?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn punch(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is
    // owned by `file`, which outlives the call.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // Filesystems without hole punching: the blocks are free in the bitmap;
    // they just keep their old bytes.
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return Ok(());
    }
    Err(err)
}

#[cfg(not(target_os = "linux"))]
fn punch(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    // Elsewhere the freed blocks keep their bytes but are free in the bitmap.
    Ok(())
}
