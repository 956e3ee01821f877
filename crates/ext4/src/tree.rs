//! The merged filesystem tree kept in memory while layers are applied: one
//! node per inode (metadata, and for files the block runs their contents were
//! streamed to), directories as sorted maps of names to nodes.

use std::collections::BTreeMap;

/// Index of a node in [`Tree::nodes`]; the root is node 0.
pub(crate) type NodeId = u32;

pub(crate) const ROOT: NodeId = 0;

/// A contiguous run of blocks on disk (at most 32768, one extent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub start: u64,
    pub len: u32,
}

/// A timestamp: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ts {
    pub sec: i64,
    pub nsec: u32,
}

/// One extended attribute, already split into ext4's name index and suffix.
#[derive(Debug, Clone)]
pub(crate) struct Xattr {
    pub index: u8,
    pub name: Box<[u8]>,
    pub value: Box<[u8]>,
}

#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// Permission bits (0o7777); the file type comes from [`Kind`].
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: Ts,
    pub mtime: Ts,
    pub ctime: Ts,
    pub xattrs: Vec<Xattr>,
}

/// A directory entry: the node it names and the layer that last wrote it
/// (whiteouts only hide entries of lower layers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dentry {
    pub node: NodeId,
    pub layer: u32,
}

#[derive(Debug)]
pub(crate) enum Kind {
    File {
        size: u64,
        runs: Vec<Run>,
    },
    Dir(BTreeMap<Box<[u8]>, Dentry>),
    Symlink(Box<[u8]>),
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// The node lost its last link; its slot is dead.
    Free,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub meta: Meta,
    pub kind: Kind,
    /// Number of directory entries naming this node.
    pub links: u32,
}

pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    /// Block runs of files that were deleted or replaced: free in the image.
    pub freed: Vec<Run>,
    /// Time given to directories created implicitly.
    pub default_time: i64,
}

impl Tree {
    pub fn new(default_time: i64) -> Self {
        let mut tree = Tree {
            nodes: Vec::new(),
            freed: Vec::new(),
            default_time,
        };
        let root = tree.implicit_dir_meta();
        tree.nodes.push(Node {
            meta: root,
            kind: Kind::Dir(BTreeMap::new()),
            links: 1,
        });
        tree
    }

    /// Metadata for a directory that a layer implies but does not list.
    pub fn implicit_dir_meta(&self) -> Meta {
        let t = Ts {
            sec: self.default_time,
            nsec: 0,
        };
        Meta {
            perm: 0o755,
            uid: 0,
            gid: 0,
            atime: t,
            mtime: t,
            ctime: t,
            xattrs: Vec::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    /// Adds a node with no links yet.
    pub fn add(&mut self, meta: Meta, kind: Kind) -> NodeId {
        let id = self.nodes.len() as NodeId;
        self.nodes.push(Node {
            meta,
            kind,
            links: 0,
        });
        id
    }

    pub fn entries(&self, dir: NodeId) -> Option<&BTreeMap<Box<[u8]>, Dentry>> {
        match &self.node(dir).kind {
            Kind::Dir(entries) => Some(entries),
            _ => None,
        }
    }

    fn entries_mut(&mut self, dir: NodeId) -> Option<&mut BTreeMap<Box<[u8]>, Dentry>> {
        match &mut self.node_mut(dir).kind {
            Kind::Dir(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn lookup(&self, dir: NodeId, name: &[u8]) -> Option<Dentry> {
        self.entries(dir).and_then(|e| e.get(name).copied())
    }

    /// Marks an existing entry as written by `layer`.
    pub fn stamp(&mut self, dir: NodeId, name: &[u8], layer: u32) {
        if let Some(d) = self.entries_mut(dir).and_then(|e| e.get_mut(name)) {
            d.layer = layer;
        }
    }

    /// Links `node` into `dir` as `name`, replacing (and unlinking) whatever was there.
    pub fn link(&mut self, dir: NodeId, name: &[u8], node: NodeId, layer: u32) {
        self.node_mut(node).links += 1;
        let old = self
            .entries_mut(dir)
            .and_then(|e| e.insert(name.into(), Dentry { node, layer }));
        if let Some(old) = old {
            self.unref(old.node);
        }
    }

    /// Removes `name` from `dir` (recursively for directories).
    pub fn remove(&mut self, dir: NodeId, name: &[u8]) {
        if let Some(old) = self.entries_mut(dir).and_then(|e| e.remove(name)) {
            self.unref(old.node);
        }
    }

    /// Makes `dir` opaque for `layer`: every entry from a lower layer goes;
    /// directories written by this layer stay but lose their lower content.
    pub fn make_opaque(&mut self, dir: NodeId, layer: u32) {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let Some(entries) = self.entries(d) else {
                continue;
            };
            let mut lower = Vec::new();
            for (name, dentry) in entries {
                if dentry.layer < layer {
                    lower.push(name.clone());
                } else if matches!(self.node(dentry.node).kind, Kind::Dir(_)) {
                    stack.push(dentry.node);
                }
            }
            for name in lower {
                self.remove(d, &name);
            }
        }
    }

    /// Drops one link of `node`; frees it (and, for directories, its
    /// children) when none remain. Iterative: trees may be deep.
    fn unref(&mut self, node: NodeId) {
        let mut stack = vec![node];
        while let Some(id) = stack.pop() {
            let n = self.node_mut(id);
            n.links = n.links.saturating_sub(1);
            if n.links > 0 {
                continue;
            }
            match std::mem::replace(&mut n.kind, Kind::Free) {
                Kind::File { runs, .. } => self.freed.extend(runs),
                Kind::Dir(entries) => stack.extend(entries.values().map(|d| d.node)),
                _ => {}
            }
            self.node_mut(id).meta.xattrs = Vec::new();
        }
    }
}
