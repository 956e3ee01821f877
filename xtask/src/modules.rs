//! `cargo xtask modules`: the module-level import graph of every crate, and its cycles.
//!
//! A cycle between two modules of one crate (`a` uses `b`, `b` uses `a`) means neither can be
//! understood, tested or moved without the other. This check reads each crate's sources with
//! `syn`, follows `mod` declarations from `lib.rs` and `main.rs`, and resolves every `use`
//! and path that starts with `crate::`, `super::` or `self::`. Sibling modules `a` and `b`
//! (children of the same parent, the crate root included) get an edge `a → b` wherever `a`
//! or anything inside it names `b` or anything inside `b`. A parent is left out of its own
//! children's graph (it declares them), and so are `#[cfg(test)]` items and the inside of
//! macro invocations. It prints every cycle with the files that make each edge, and fails
//! when there is one.

use crate::paths::repo_root;
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// The graph among the children of one module: child → the siblings it uses, with where.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>;

/// A module's path from the crate root (empty for the root).
type ModPath = Vec<String>;

/// One crate root's modules and the references between them.
#[derive(Default)]
struct Crate {
    modules: BTreeSet<ModPath>,
    /// (the module that refers, the absolute path it names, the file it is in).
    refs: Vec<(ModPath, Vec<String>, PathBuf)>,
}

impl Crate {
    /// The graph among `parent`'s child modules.
    fn siblings(&self, parent: &[String]) -> Graph {
        let child_of = |path: &[String]| -> Option<String> {
            let child = path.get(parent.len())?;
            let mut module = parent.to_vec();
            module.push(child.clone());
            (path.starts_with(parent) && self.modules.contains(&module)).then(|| child.clone())
        };
        let mut graph = Graph::new();
        for module in &self.modules {
            if module.len() == parent.len() + 1 && module.starts_with(parent) {
                graph.entry(module[parent.len()].clone()).or_default();
            }
        }
        for (from, to, file) in &self.refs {
            if let (Some(a), Some(b)) = (child_of(from), child_of(to))
                && a != b
            {
                graph
                    .entry(a)
                    .or_default()
                    .entry(b)
                    .or_default()
                    .insert(file.clone());
            }
        }
        graph
    }
}

pub fn check() -> Result<()> {
    let root = repo_root();
    let mut cycles = 0;
    let mut roots = 0;
    for src in crate_sources(&root)? {
        for file in ["lib.rs", "main.rs"] {
            let path = src.join(file);
            if !path.exists() {
                continue;
            }
            roots += 1;
            let krate = read_crate(&path)?;
            let shown = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let parents = std::iter::once(Vec::new()).chain(krate.modules.iter().cloned());
            for parent in parents {
                let graph = krate.siblings(&parent);
                for scc in strongly_connected(&graph) {
                    cycles += 1;
                    let inside = if parent.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", parent.join("::"))
                    };
                    println!("cycle in {shown}{inside}: {}", scc.join(" ↔ "));
                    for from in &scc {
                        for (to, files) in &graph[from] {
                            if scc.contains(to) {
                                let files: Vec<String> = files
                                    .iter()
                                    .map(|f| {
                                        f.strip_prefix(&root).unwrap_or(f).display().to_string()
                                    })
                                    .collect();
                                println!("  {from} → {to}: {}", files.join(", "));
                            }
                        }
                    }
                }
            }
        }
    }
    if cycles > 0 {
        bail!("{cycles} module cycle(s) in {roots} crate roots");
    }
    println!("no module cycles in {roots} crate roots");
    Ok(())
}

/// Every `src/` directory of the workspace's packages.
fn crate_sources(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root.join("crates"))? {
        let src = entry?.path().join("src");
        if src.is_dir() {
            out.push(src);
        }
    }
    for package in ["vminitd", "xtask", "tests"] {
        let src = root.join(package).join("src");
        if src.is_dir() {
            out.push(src);
        }
    }
    out.sort();
    Ok(out)
}

fn parse(path: &Path) -> Result<syn::File> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    syn::parse_file(&text).with_context(|| format!("parsing {}", path.display()))
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// `#[path = "…"]` on a module declaration.
fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// The modules of one crate root (`lib.rs` or `main.rs`) and their references.
fn read_crate(root_file: &Path) -> Result<Crate> {
    let mut krate = Crate::default();
    let root = parse(root_file)?;
    let dir = root_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for item in &root.items {
        if let syn::Item::Mod(m) = item
            && !is_test_only(&m.attrs)
        {
            walk_module(&mut krate, &dir, m, &[m.ident.to_string()])?;
        }
    }
    Ok(krate)
}

/// Records module `at` (a path from the crate root) declared by `decl`, whose body is inline
/// or in a file next to `parent_dir`, with its references; then its children.
fn walk_module(
    krate: &mut Crate,
    parent_dir: &Path,
    decl: &syn::ItemMod,
    at: &[String],
) -> Result<()> {
    let name = decl.ident.to_string();
    let (items, file, child_dir) = match &decl.content {
        Some((_, items)) => (items.to_vec(), None, parent_dir.join(&name)),
        None => {
            let file = match path_attr(&decl.attrs) {
                Some(p) => parent_dir.join(p),
                None if parent_dir.join(format!("{name}.rs")).exists() => {
                    parent_dir.join(format!("{name}.rs"))
                }
                None => parent_dir.join(&name).join("mod.rs"),
            };
            let parsed = parse(&file)?;
            let child_dir = if file.file_name().is_some_and(|f| f == "mod.rs") {
                file.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                parent_dir.join(&name)
            };
            (parsed.items, Some(file), child_dir)
        }
    };
    let source = file.unwrap_or_else(|| parent_dir.join(format!("{name}.rs")));
    krate.modules.insert(at.to_vec());
    let mut refs = References {
        at,
        found: BTreeSet::new(),
    };
    for item in &items {
        match item {
            syn::Item::Mod(_) => {}
            item if item_is_test_only(item) => {}
            item => refs.visit_item(item),
        }
    }
    for target in refs.found {
        krate.refs.push((at.to_vec(), target, source.clone()));
    }
    for item in &items {
        if let syn::Item::Mod(m) = item
            && !is_test_only(&m.attrs)
        {
            let mut child = at.to_vec();
            child.push(m.ident.to_string());
            walk_module(krate, &child_dir, m, &child)?;
        }
    }
    Ok(())
}

fn item_is_test_only(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        _ => return false,
    };
    is_test_only(attrs)
}

/// The absolute paths that one module names.
struct References<'a> {
    /// The module being read, from the crate root.
    at: &'a [String],
    found: BTreeSet<Vec<String>>,
}

impl References<'_> {
    /// Resolves a path's leading segments to a top-level module of the crate, if it names one.
    fn resolve(&mut self, segments: &[String]) {
        let absolute: Vec<String> = match segments.first().map(String::as_str) {
            Some("crate") => segments[1..].to_vec(),
            Some("self") => self.at.iter().chain(&segments[1..]).cloned().collect(),
            Some("super") => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                if ups > self.at.len() {
                    return;
                }
                let base = &self.at[..self.at.len() - ups];
                base.iter().chain(&segments[ups..]).cloned().collect()
            }
            _ => return,
        };
        if !absolute.is_empty() {
            self.found.insert(absolute);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl References<'_> {
    /// Paths inside a macro's arguments: `crate::a::b`, `super::…`, `self::…` token runs.
    fn tokens(&mut self, stream: proc_macro2::TokenStream) {
        use proc_macro2::TokenTree;
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id)
                    if matches!(id.to_string().as_str(), "crate" | "super" | "self") =>
                {
                    let mut segments = vec![id.to_string()];
                    let mut j = i + 1;
                    while let (
                        Some(TokenTree::Punct(a)),
                        Some(TokenTree::Punct(b)),
                        Some(TokenTree::Ident(next)),
                    ) = (tokens.get(j), tokens.get(j + 1), tokens.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.resolve(&segments);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for References<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        self.tokens(m.tokens.clone());
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Nested modules are walked on their own, with their own position.
    }

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
}

/// The graph's cycles: strongly connected components of more than one module (Tarjan).
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(BTreeMap::keys) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> tempfile_dir::Dir {
        let dir = tempfile_dir::Dir::new();
        for (name, text) in files {
            let path = dir.0.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    /// A scratch directory removed on drop (xtask keeps no tempfile dependency).
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "xtask-modules-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn finds_a_cycle_through_crate_super_and_submodules() {
        let dir = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\n"),
            ("a.rs", "use crate::b::Thing;\n"),
            ("b/mod.rs", "mod inner;\n"),
            ("b/inner.rs", "fn f() { super::super::c::g(); }\n"),
            ("c.rs", "pub fn g() { log!(\"{}\", crate::a::h()) }\n"),
            (
                "d.rs",
                "use crate::a::X;\n#[cfg(test)]\nmod tests { use crate::d::Y; }\n",
            ),
        ]);
        let krate = read_crate(&dir.0.join("lib.rs")).unwrap();
        let graph = krate.siblings(&[]);
        assert_eq!(
            strongly_connected(&graph),
            vec![vec!["a".to_string(), "b".into(), "c".into()]]
        );
        assert!(graph["d"].contains_key("a"));
        assert!(!graph["d"].contains_key("d"));
    }

    #[test]
    fn test_only_code_makes_no_edge() {
        let dir = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::X;\n"),
            (
                "b.rs",
                "#[cfg(test)]\nuse crate::a::Y;\n#[cfg(test)]\nmod tests { use crate::a::Z; }\n",
            ),
        ]);
        let krate = read_crate(&dir.0.join("lib.rs")).unwrap();
        assert!(strongly_connected(&krate.siblings(&[])).is_empty());
    }

    #[test]
    fn finds_a_cycle_between_nested_siblings() {
        let dir = crate_with(&[
            ("lib.rs", "mod commands;\nmod output;\n"),
            ("commands/mod.rs", "mod container;\nmod image;\n"),
            (
                "commands/container.rs",
                "use super::image::pull;\nuse crate::output::Table;\n",
            ),
            (
                "commands/image.rs",
                "pub fn f() { crate::commands::container::g() }\n",
            ),
            ("output.rs", "pub struct Table;\n"),
        ]);
        let krate = read_crate(&dir.0.join("lib.rs")).unwrap();
        assert!(strongly_connected(&krate.siblings(&[])).is_empty());
        assert_eq!(
            strongly_connected(&krate.siblings(&["commands".to_string()])),
            vec![vec!["container".to_string(), "image".into()]]
        );
    }
}
