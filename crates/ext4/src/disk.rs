//! Byte layouts of ext4 structures: superblock, group descriptors, inodes,
//! extent trees, directory blocks (linear and htree), extended attributes and
//! the jbd2 journal superblock. Pure functions, no I/O.

use crate::hash;
use crate::tree::{Run, Ts, Xattr};

pub(crate) const BS: usize = 4096;
pub(crate) const INODE_SIZE: usize = 256;
pub(crate) const EXTRA_ISIZE: u16 = 32;
pub(crate) const BLOCKS_PER_GROUP: u64 = 32768;
pub(crate) const DESC_SIZE: usize = 64;
pub(crate) const FIRST_INO: u32 = 11;
pub(crate) const ROOT_INO: u32 = 2;
pub(crate) const JOURNAL_INO: u32 = 8;
/// Longest extent ext4 allows for initialized data.
pub(crate) const MAX_EXTENT_LEN: u64 = 32768;

pub(crate) const S_IFIFO: u16 = 0o010000;
pub(crate) const S_IFCHR: u16 = 0o020000;
pub(crate) const S_IFDIR: u16 = 0o040000;
pub(crate) const S_IFBLK: u16 = 0o060000;
pub(crate) const S_IFREG: u16 = 0o100000;
pub(crate) const S_IFLNK: u16 = 0o120000;

pub(crate) const FT_REG: u8 = 1;
pub(crate) const FT_DIR: u8 = 2;
pub(crate) const FT_CHR: u8 = 3;
pub(crate) const FT_BLK: u8 = 4;
pub(crate) const FT_FIFO: u8 = 5;
pub(crate) const FT_SYMLINK: u8 = 7;

const EXTENTS_FL: u32 = 0x0008_0000;
const INDEX_FL: u32 = 0x0000_1000;

// Feature flags (see the README for why each is on).
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_EXT_ATTR: u32 = 0x8;
const COMPAT_DIR_INDEX: u32 = 0x20;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
const RO_COMPAT_DIR_NLINK: u32 = 0x20;
const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put32be(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Everything the superblock records that varies between images.
pub(crate) struct Superblock {
    pub blocks: u64,
    pub free_blocks: u64,
    pub inodes: u32,
    pub free_inodes: u32,
    pub inodes_per_group: u32,
    pub time: u32,
    pub uuid: [u8; 16],
    pub hash_seed: [u32; 4],
    pub label: [u8; 16],
    pub backup_bgs: [u32; 2],
    /// The journal inode's `i_block` and size, backed up in the superblock.
    pub journal_iblock: [u8; 60],
    pub journal_size: u64,
}

impl Superblock {
    /// The 1024-byte superblock as stored in group `group` (0 = primary).
    pub fn encode(&self, group: u16) -> [u8; 1024] {
        let mut b = [0u8; 1024];
        put32(&mut b, 0x00, self.inodes);
        put32(&mut b, 0x04, self.blocks as u32);
        put32(&mut b, 0x0C, self.free_blocks as u32);
        put32(&mut b, 0x10, self.free_inodes);
        put32(&mut b, 0x14, 0); // first data block (0 for 4 KiB blocks)
        put32(&mut b, 0x18, 2); // log2(4096) - 10
        put32(&mut b, 0x1C, 2);
        put32(&mut b, 0x20, BLOCKS_PER_GROUP as u32);
        put32(&mut b, 0x24, BLOCKS_PER_GROUP as u32);
        put32(&mut b, 0x28, self.inodes_per_group);
        put32(&mut b, 0x30, self.time); // wtime
        put16(&mut b, 0x36, 0xFFFF); // max mount count: no forced checks
        put16(&mut b, 0x38, 0xEF53);
        put16(&mut b, 0x3A, 1); // clean
        put16(&mut b, 0x3C, 1); // errors=continue
        put32(&mut b, 0x40, self.time); // lastcheck
        put32(&mut b, 0x4C, 1); // dynamic rev
        put32(&mut b, 0x54, FIRST_INO);
        put16(&mut b, 0x58, INODE_SIZE as u16);
        put16(&mut b, 0x5A, group);
        put32(
            &mut b,
            0x5C,
            COMPAT_HAS_JOURNAL | COMPAT_EXT_ATTR | COMPAT_DIR_INDEX | COMPAT_SPARSE_SUPER2,
        );
        put32(
            &mut b,
            0x60,
            INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG,
        );
        put32(
            &mut b,
            0x64,
            RO_COMPAT_SPARSE_SUPER
                | RO_COMPAT_LARGE_FILE
                | RO_COMPAT_HUGE_FILE
                | RO_COMPAT_DIR_NLINK
                | RO_COMPAT_EXTRA_ISIZE,
        );
        b[0x68..0x78].copy_from_slice(&self.uuid);
        b[0x78..0x88].copy_from_slice(&self.label);
        put32(&mut b, 0xE0, JOURNAL_INO);
        for (i, w) in self.hash_seed.iter().enumerate() {
            put32(&mut b, 0xEC + 4 * i, *w);
        }
        b[0xFC] = 1; // default hash: half_md4
        b[0xFD] = 1; // s_jnl_blocks holds a backup of the journal inode
        put16(&mut b, 0xFE, DESC_SIZE as u16);
        // Default mount options: user_xattr (0x4), acl (0x8), data=ordered (0x40).
        put32(&mut b, 0x100, 0x0004 | 0x0008 | 0x0040);
        put32(&mut b, 0x108, self.time); // mkfs time
        b[0x10C..0x10C + 60].copy_from_slice(&self.journal_iblock);
        put32(&mut b, 0x10C + 60, (self.journal_size >> 32) as u32);
        put32(&mut b, 0x10C + 64, self.journal_size as u32);
        put32(&mut b, 0x150, (self.blocks >> 32) as u32);
        put32(&mut b, 0x158, (self.free_blocks >> 32) as u32);
        put16(&mut b, 0x15C, EXTRA_ISIZE);
        put16(&mut b, 0x15E, EXTRA_ISIZE);
        put32(&mut b, 0x160, 0x2); // directory hashes use unsigned chars
        b[0x174] = 4; // 16 groups per flex group
        put32(&mut b, 0x24C, self.backup_bgs[0]);
        put32(&mut b, 0x250, self.backup_bgs[1]);
        b
    }
}

/// One block group descriptor.
pub(crate) struct GroupDesc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub used_dirs: u32,
}

impl GroupDesc {
    pub fn encode(&self, b: &mut [u8]) {
        put32(b, 0x00, self.block_bitmap as u32);
        put32(b, 0x04, self.inode_bitmap as u32);
        put32(b, 0x08, self.inode_table as u32);
        put16(b, 0x0C, self.free_blocks as u16);
        put16(b, 0x0E, self.free_inodes as u16);
        put16(b, 0x10, self.used_dirs as u16);
        put32(b, 0x20, (self.block_bitmap >> 32) as u32);
        put32(b, 0x24, (self.inode_bitmap >> 32) as u32);
        put32(b, 0x28, (self.inode_table >> 32) as u32);
        put16(b, 0x2C, (self.free_blocks >> 16) as u16);
        put16(b, 0x2E, (self.free_inodes >> 16) as u16);
        put16(b, 0x30, (self.used_dirs >> 16) as u16);
    }
}

/// What goes into `i_block`.
pub(crate) enum IBlock {
    /// Extent tree root (also used, empty, for empty files).
    Extents([u8; 60]),
    /// Raw bytes: fast symlink target or device number.
    Raw([u8; 60]),
}

/// Fields of one inode.
pub(crate) struct Inode<'a> {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: Ts,
    pub ctime: Ts,
    pub mtime: Ts,
    pub links: u16,
    /// Blocks owned (data, extent tree, xattr block), in 4 KiB units.
    pub blocks: u64,
    pub iblock: IBlock,
    pub indexed_dir: bool,
    pub xattr_block: u64,
    /// Extended attributes stored inside the inode (already known to fit).
    pub inline_xattrs: &'a [&'a Xattr],
}

fn time_fields(t: Ts) -> (u32, u32) {
    let lo = t.sec as i32;
    let epoch = ((t.sec - i64::from(lo)) >> 32) as u32 & 3;
    (lo as u32, (t.nsec << 2) | epoch)
}

impl Inode<'_> {
    pub fn encode(&self, b: &mut [u8]) {
        debug_assert_eq!(b.len(), INODE_SIZE);
        put16(b, 0x00, self.mode);
        put16(b, 0x02, self.uid as u16);
        put32(b, 0x04, self.size as u32);
        let (at, atx) = time_fields(self.atime);
        let (ct, ctx) = time_fields(self.ctime);
        let (mt, mtx) = time_fields(self.mtime);
        put32(b, 0x08, at);
        put32(b, 0x0C, ct);
        put32(b, 0x10, mt);
        put16(b, 0x18, self.gid as u16);
        put16(b, 0x1A, self.links);
        let sectors = self.blocks * (BS as u64 / 512);
        put32(b, 0x1C, sectors as u32);
        let mut flags = 0;
        match &self.iblock {
            IBlock::Extents(x) => {
                flags |= EXTENTS_FL;
                b[0x28..0x64].copy_from_slice(x);
            }
            IBlock::Raw(x) => b[0x28..0x64].copy_from_slice(x),
        }
        if self.indexed_dir {
            flags |= INDEX_FL;
        }
        put32(b, 0x20, flags);
        put32(b, 0x68, self.xattr_block as u32);
        put32(b, 0x6C, (self.size >> 32) as u32);
        put16(b, 0x74, (sectors >> 32) as u16);
        put16(b, 0x76, (self.xattr_block >> 32) as u16);
        put16(b, 0x78, (self.uid >> 16) as u16);
        put16(b, 0x7A, (self.gid >> 16) as u16);
        put16(b, 0x80, EXTRA_ISIZE);
        put32(b, 0x84, ctx);
        put32(b, 0x88, mtx);
        put32(b, 0x8C, atx);
        put32(b, 0x90, ct); // crtime: tar has no birth time; use ctime
        put32(b, 0x94, ctx);
        if !self.inline_xattrs.is_empty() {
            let start = 128 + EXTRA_ISIZE as usize;
            put32(b, start, XATTR_MAGIC);
            encode_xattr_entries(&mut b[start + 4..], self.inline_xattrs);
        }
    }
}

/// Encodes a device number the way the kernel's ext4 does.
pub(crate) fn device_iblock(major: u32, minor: u32) -> [u8; 60] {
    let mut b = [0u8; 60];
    if major < 256 && minor < 256 {
        put32(&mut b, 0, (major << 8) | minor);
    } else {
        put32(
            &mut b,
            4,
            (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12),
        );
    }
    b
}

const EXTENT_MAGIC: u16 = 0xF30A;

fn extent_header(b: &mut [u8], entries: u16, max: u16, depth: u16) {
    put16(b, 0, EXTENT_MAGIC);
    put16(b, 2, entries);
    put16(b, 4, max);
    put16(b, 6, depth);
}

fn extent_entry(b: &mut [u8], logical: u32, run: Run) {
    put32(b, 0, logical);
    put16(b, 4, run.len as u16);
    put16(b, 6, (run.start >> 32) as u16);
    put32(b, 8, run.start as u32);
}

/// Entries per extent leaf block.
pub(crate) const EXTENTS_PER_LEAF: usize = (BS - 12) / 12;

/// Number of leaf blocks the extent tree of `runs` needs (0: fits in the inode).
pub(crate) fn extent_leaves_needed(runs: usize) -> usize {
    if runs <= 4 {
        0
    } else {
        runs.div_ceil(EXTENTS_PER_LEAF)
    }
}

/// Builds the extent tree for `runs` (logically contiguous from block 0).
/// `leaves` are the blocks allocated for leaf nodes
/// ([`extent_leaves_needed`] of them, at most 4). Returns the `i_block` bytes
/// and the contents of each leaf block.
pub(crate) fn extent_tree(runs: &[Run], leaves: &[u64]) -> ([u8; 60], Vec<Vec<u8>>) {
    let mut root = [0u8; 60];
    if leaves.is_empty() {
        extent_header(&mut root, runs.len() as u16, 4, 0);
        let mut logical = 0u32;
        for (i, run) in runs.iter().enumerate() {
            extent_entry(&mut root[12 + 12 * i..], logical, *run);
            logical += run.len;
        }
        return (root, Vec::new());
    }
    extent_header(&mut root, leaves.len() as u16, 4, 1);
    let mut blocks = Vec::with_capacity(leaves.len());
    let mut logical = 0u32;
    for (i, (chunk, &leaf)) in runs.chunks(EXTENTS_PER_LEAF).zip(leaves).enumerate() {
        let idx = &mut root[12 + 12 * i..24 + 12 * i];
        put32(idx, 0, logical);
        put32(idx, 4, leaf as u32);
        put16(idx, 8, (leaf >> 32) as u16);
        let mut block = vec![0u8; BS];
        extent_header(&mut block, chunk.len() as u16, EXTENTS_PER_LEAF as u16, 0);
        for (j, run) in chunk.iter().enumerate() {
            extent_entry(&mut block[12 + 12 * j..], logical, *run);
            logical += run.len;
        }
        blocks.push(block);
    }
    (root, blocks)
}

/// One name in a directory being laid out.
pub(crate) struct DirEntry<'a> {
    pub name: &'a [u8],
    pub ino: u32,
    pub file_type: u8,
}

fn rec_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

fn put_dirent(b: &mut [u8], ino: u32, rec: usize, name: &[u8], ft: u8) {
    put32(b, 0, ino);
    put16(b, 4, rec as u16);
    b[6] = name.len() as u8;
    b[7] = ft;
    b[8..8 + name.len()].copy_from_slice(name);
}

/// A directory entry as laid out: name, inode, file type.
type Slot<'a> = (&'a [u8], u32, u8);

/// Writes entries into one block, the last one stretching to the block end.
fn fill_block(block: &mut [u8], entries: &[Slot<'_>]) {
    let mut off = 0;
    for (i, (name, ino, ft)) in entries.iter().enumerate() {
        let rec = if i + 1 == entries.len() {
            BS - off
        } else {
            rec_len(name.len())
        };
        put_dirent(&mut block[off..], *ino, rec, name, *ft);
        off += rec;
    }
}

/// Directory contents: the blocks and whether they form an htree.
pub(crate) struct DirBlocks {
    pub data: Vec<u8>,
    pub indexed: bool,
}

/// Lays out a directory. One block holds it linearly when it fits; otherwise
/// it becomes an htree (hashed, `dx_dir`) with one or two index levels.
/// `min_blocks` pads small directories (lost+found gets 4 blocks, as mke2fs does).
pub(crate) fn dir_blocks(
    self_ino: u32,
    parent_ino: u32,
    entries: &[DirEntry<'_>],
    seed: &[u32; 4],
    min_blocks: usize,
) -> Result<DirBlocks, String> {
    let total: usize = 24 + entries.iter().map(|e| rec_len(e.name.len())).sum::<usize>();
    if total <= BS {
        let mut data = vec![0u8; BS * min_blocks.max(1)];
        let mut list: Vec<(&[u8], u32, u8)> =
            vec![(b".", self_ino, FT_DIR), (b"..", parent_ino, FT_DIR)];
        list.extend(entries.iter().map(|e| (e.name, e.ino, e.file_type)));
        fill_block(&mut data[..BS], &list);
        for block in data[BS..].chunks_mut(BS) {
            put16(block, 4, BS as u16); // empty block: one unused entry
        }
        return Ok(DirBlocks {
            data,
            indexed: false,
        });
    }

    // Sort by hash and pack leaves; a run of equal hashes that continues into
    // the next leaf marks that leaf's index entry with the collision bit.
    let mut hashed: Vec<(u32, &DirEntry<'_>)> = entries
        .iter()
        .map(|e| (hash::dx_hash_half_md4(e.name, seed), e))
        .collect();
    hashed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(b.1.name)));
    // (index hash, entries) per leaf block.
    let mut leaves: Vec<(u32, Vec<Slot<'_>>)> = Vec::new();
    let mut used = BS; // forces a new leaf for the first entry
    let mut last_hash = None;
    for (h, e) in &hashed {
        let rec = rec_len(e.name.len());
        if used + rec > BS {
            let key = if last_hash == Some(*h) { h | 1 } else { *h };
            leaves.push((key, Vec::new()));
            used = 0;
        }
        used += rec;
        last_hash = Some(*h);
        if let Some(leaf) = leaves.last_mut() {
            leaf.1.push((e.name, e.ino, e.file_type));
        }
    }

    const ROOT_LIMIT: usize = (BS - 32) / 8;
    const NODE_LIMIT: usize = (BS - 8) / 8;
    let nleaves = leaves.len();
    let (levels, nodes) = if nleaves <= ROOT_LIMIT {
        (0u8, 0usize)
    } else {
        let nodes = nleaves.div_ceil(NODE_LIMIT);
        if nodes > ROOT_LIMIT {
            return Err(format!("directory with {} entries", entries.len()));
        }
        (1, nodes)
    };
    let nblocks = 1 + nodes + nleaves;
    let mut data = vec![0u8; nblocks * BS];

    // Root block: "." and ".." then dx_root_info and the first index level.
    put_dirent(&mut data[0..], self_ino, 12, b".", FT_DIR);
    put_dirent(&mut data[12..], parent_ino, BS - 12, b"..", FT_DIR);
    data[24 + 4] = 1; // hash version half_md4 (unsigned per superblock flag)
    data[24 + 5] = 8; // info length
    data[24 + 6] = levels;
    let leaf_base = 1 + nodes;
    let write_index = |b: &mut [u8], limit: usize, items: &[(u32, u32)]| {
        put16(b, 0, limit as u16);
        put16(b, 2, items.len() as u16);
        for (i, (h, blk)) in items.iter().enumerate() {
            if i > 0 {
                put32(b, 8 * i, *h);
            }
            put32(b, 8 * i + 4, *blk);
        }
    };
    let leaf_items: Vec<(u32, u32)> = leaves
        .iter()
        .enumerate()
        .map(|(i, (h, _))| (*h, (leaf_base + i) as u32))
        .collect();
    if levels == 0 {
        write_index(&mut data[32..BS], ROOT_LIMIT, &leaf_items);
    } else {
        let mut root_items = Vec::new();
        for (n, chunk) in leaf_items.chunks(NODE_LIMIT).enumerate() {
            let block = &mut data[(1 + n) * BS..(2 + n) * BS];
            put16(block, 4, BS as u16); // fake empty dirent spanning the block
            write_index(&mut block[8..], NODE_LIMIT, chunk);
            root_items.push((chunk[0].0, (1 + n) as u32));
        }
        write_index(&mut data[32..BS], ROOT_LIMIT, &root_items);
    }
    for (i, (_, list)) in leaves.iter().enumerate() {
        let off = (leaf_base + i) * BS;
        fill_block(&mut data[off..off + BS], list);
    }
    Ok(DirBlocks {
        data,
        indexed: true,
    })
}

pub(crate) const XATTR_MAGIC: u32 = 0xEA02_0000;

fn xattr_entry_len(x: &Xattr) -> usize {
    (16 + x.name.len() + 3) & !3
}

fn xattr_value_len(x: &Xattr) -> usize {
    (x.value.len() + 3) & !3
}

/// Bytes the attributes need: entries plus the 4-byte terminator, and values.
fn xattrs_size(xs: &[&Xattr]) -> usize {
    4 + xs
        .iter()
        .map(|x| xattr_entry_len(x) + xattr_value_len(x))
        .sum::<usize>()
}

/// Whether the attributes fit in the inode's spare bytes (after the magic).
pub(crate) fn xattrs_fit_inline(xs: &[&Xattr]) -> bool {
    xattrs_size(xs) <= INODE_SIZE - 128 - EXTRA_ISIZE as usize - 4
}

/// Whether the attributes fit in one external block (after its 32-byte header).
pub(crate) fn xattrs_fit_block(xs: &[&Xattr]) -> bool {
    xattrs_size(xs) <= BS - 32
}

/// Writes entries from the start of `area` and values packed at its end;
/// value offsets are relative to the start of `area`.
fn encode_xattr_entries(area: &mut [u8], xs: &[&Xattr]) -> Vec<u32> {
    let mut off = 0;
    let mut value_end = area.len();
    let mut hashes = Vec::with_capacity(xs.len());
    for x in xs {
        let vlen = xattr_value_len(x);
        value_end -= vlen;
        area[value_end..value_end + x.value.len()].copy_from_slice(&x.value);
        let h = hash::xattr_entry_hash(&x.name, &x.value);
        let e = &mut area[off..];
        e[0] = x.name.len() as u8;
        e[1] = x.index;
        put16(
            e,
            2,
            if x.value.is_empty() {
                0
            } else {
                value_end as u16
            },
        );
        put32(e, 8, x.value.len() as u32);
        put32(e, 12, h);
        e[16..16 + x.name.len()].copy_from_slice(&x.name);
        off += xattr_entry_len(x);
        hashes.push(h);
    }
    hashes
}

/// An external extended-attribute block holding `xs` (sorted as the kernel
/// expects: by name index, name length, name).
pub(crate) fn xattr_block(xs: &[&Xattr]) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    put32(&mut b, 0, XATTR_MAGIC);
    put32(&mut b, 4, 1); // refcount
    put32(&mut b, 8, 1); // blocks
    // Offsets in a block count from the block start, so encode in place and
    // shift entry offsets by the header size.
    let hashes = encode_xattr_entries(&mut b[32..], xs);
    let mut off = 32;
    for x in xs {
        let v = u16::from_le_bytes([b[off + 2], b[off + 3]]);
        if v != 0 {
            put16(&mut b, off + 2, v + 32);
        }
        off += xattr_entry_len(x);
    }
    put32(&mut b, 16, hash::xattr_block_hash(hashes.into_iter()));
    b
}

/// Sort order the kernel uses for attribute entries.
pub(crate) fn sort_xattrs(xs: &mut [&Xattr]) {
    xs.sort_by(|a, b| {
        a.index
            .cmp(&b.index)
            .then(a.name.len().cmp(&b.name.len()))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// The jbd2 superblock of an empty, clean journal of `blocks` blocks.
pub(crate) fn journal_superblock(blocks: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    put32be(&mut b, 0x0, 0xC03B_3998); // magic
    put32be(&mut b, 0x4, 4); // superblock v2
    put32be(&mut b, 0xC, BS as u32);
    put32be(&mut b, 0x10, blocks);
    put32be(&mut b, 0x14, 1); // first log block
    put32be(&mut b, 0x18, 1); // first expected commit id
    put32be(&mut b, 0x1C, 0); // start 0: clean, nothing to replay
    b[0x30..0x40].copy_from_slice(uuid);
    put32be(&mut b, 0x40, 1); // one user: this filesystem
    b
}

/// Journal size `mke2fs` picks for a filesystem of `blocks` 4 KiB blocks.
pub(crate) fn default_journal_blocks(blocks: u64) -> u32 {
    match blocks {
        b if b < 32768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    }
}
