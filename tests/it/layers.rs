//! The import graph of src/: no cycle between modules. Each file is a
//! module (`crate::bus::memory`); an import is any `crate::…` or `super::…`
//! path in it (`use` trees expanded), resolved to the longest module it
//! names. A module and its own submodules are one room (a parent declares
//! its children, a child uses its parent's items), so edges between them do
//! not count; every other edge does. Test code at the end of a file
//! (`#[cfg(test)] mod tests { … }`) is left out.
//!
//! Two checks: no cycle between modules, and the layers of ARCHITECTURE.md:
//! a top-level module (`crate::bus`, `crate::clock`, …) imports only modules
//! of its own layer or of the layers below it. Test-only modules (a `tests`
//! path segment) may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src/` and its source text.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod") {
                    parts.pop();
                }
                let name = match parts.as_slice() {
                    [one] if one == "lib" || one == "main" => "crate".to_owned(),
                    _ => format!("crate::{}", parts.join("::")),
                };
                out.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The paths of a `use` tree's braces: `a::{b, c::{d, e}}` under `prefix`.
fn expand(prefix: &str, body: &str) -> Vec<String> {
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in body.chars() {
        match ch {
            '{' => {
                depth += 1;
                cur.push(ch)
            }
            '}' => {
                depth -= 1;
                cur.push(ch)
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    items.push(cur);
    let mut out = Vec::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        match item.find("::{") {
            Some(i) if item.ends_with('}') => out.extend(expand(
                &format!("{prefix}::{}", &item[..i]),
                &item[i + 3..item.len() - 1],
            )),
            _ => {
                let path = item.split(" as ").next().unwrap().trim();
                out.push(format!("{prefix}::{path}"));
            }
        }
    }
    out
}

/// The `crate::` and `super::` paths a module's (non-test) code names.
fn paths(code: &str) -> Vec<String> {
    let code = code
        .find("#[cfg(test)]\nmod tests {")
        .map_or(code, |i| &code[..i]);
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    // `use crate::x::{…};` (possibly over several lines).
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        rest = &rest[i + 4..];
        let Some(end) = rest.find(';') else { break };
        let tree = rest[..end].trim();
        if let Some(b) = tree.find("::{") {
            let root = &tree[..b];
            if (root.starts_with("crate") || root.starts_with("super")) && tree.ends_with('}') {
                out.extend(expand(root, &tree[b + 3..tree.len() - 1]));
            }
        }
    }
    // Every `crate::a::b` or `super::a` path in the code.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let i = from + i;
            from = i + start.len();
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
                continue;
            }
            let end = code[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| i + e);
            out.push(code[i..end].trim_end_matches(':').to_owned());
        }
    }
    out
}

/// Edges between modules: who imports whom (rooms as above).
fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| mods.contains_key(m))
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in mods {
        for p in paths(code) {
            let mut base = m.clone();
            let mut q = p.as_str();
            let relative = q.starts_with("super::");
            while let Some(r) = q.strip_prefix("super::") {
                base = base
                    .rsplit_once("::")
                    .map_or("crate".into(), |(b, _)| b.into());
                q = r;
            }
            let full = if relative {
                format!("{base}::{q}")
            } else {
                q.to_owned()
            };
            let Some(t) = resolve(&full) else { continue };
            let related =
                t == *m || t.starts_with(&format!("{m}::")) || m.starts_with(&format!("{t}::"));
            if !related {
                out.entry(m.clone()).or_default().insert(t);
            }
        }
    }
    out
}

/// `edges` plus an edge from each module to each of its children: a module
/// that imports `crate::store` depends on everything `store` declares, so
/// `clock -> store` and `store::journal -> clock` close a cycle.
fn with_parents_holding_children(
    mut edges: BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let all: BTreeSet<String> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned()))
        .collect();
    for m in &all {
        if let Some((parent, _)) = m.rsplit_once("::") {
            if parent != "crate" {
                edges
                    .entry(parent.to_owned())
                    .or_default()
                    .insert(m.clone());
            }
        }
    }
    edges
}

/// The import cycles (strongly connected components of more than one module).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        out: Vec<Vec<String>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: &str) {
            let i = self.index.len();
            self.index.insert(v.into(), i);
            self.low.insert(v.into(), i);
            self.stack.push(v.into());
            self.on.insert(v.into());
            let next: Vec<String> = self.edges.get(v).into_iter().flatten().cloned().collect();
            for w in next {
                if !self.index.contains_key(&w) {
                    self.visit(&w);
                    let l = self.low[v].min(self.low[&w]);
                    self.low.insert(v.into(), l);
                } else if self.on.contains(&w) {
                    let l = self.low[v].min(self.index[&w]);
                    self.low.insert(v.into(), l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on.remove(&w);
                    let done = w == v;
                    comp.push(w);
                    if done {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let all: BTreeSet<String> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned()))
        .collect();
    for v in all {
        if !t.index.contains_key(&v) {
            t.visit(&v);
        }
    }
    t.out
}

#[test]
fn no_module_of_src_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    assert!(mods.len() > 50, "read {} modules", mods.len());
    let edges = with_parents_holding_children(edges(&mods));
    let found = cycles(&edges);
    let explain: Vec<String> = found
        .iter()
        .map(|c| {
            let set: BTreeSet<&String> = c.iter().collect();
            let inner: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| set.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            inner.join(", ")
        })
        .collect();
    assert!(found.is_empty(), "import cycles: {explain:#?}");
}

#[test]
fn the_check_sees_a_cycle_through_use_trees_and_super_paths() {
    // The check must be able to fail: a cycle through a braced `use` and a
    // `super::` path; one through a parent module and what it declares
    // (`e` imports `f`, `f`'s child imports `e`); and none between a module
    // and its own submodule.
    let mods: BTreeMap<String, String> = [
        ("crate::a", "use crate::{b::Thing, c};"),
        ("crate::b", "pub struct Thing;"),
        ("crate::b::inner", "fn f() { super::super::a::g() }"),
        ("crate::c", "use crate::b::inner;"),
        ("crate::d", "use crate::d::child;"),
        ("crate::d::child", "use super::Item;"),
        ("crate::e", "use crate::f::Store;"),
        ("crate::f", "pub struct Store;"),
        ("crate::f::journal", "use crate::e::now;"),
    ]
    .into_iter()
    .map(|(m, c)| (m.to_owned(), c.to_owned()))
    .collect();
    let found = cycles(&with_parents_holding_children(edges(&mods)));
    let names = |c: &[&str]| c.iter().map(|m| m.to_string()).collect::<Vec<_>>();
    assert_eq!(
        found,
        vec![
            names(&["crate::a", "crate::b", "crate::b::inner", "crate::c"]),
            names(&["crate::e", "crate::f", "crate::f::journal"]),
        ],
        "a -> c -> b::inner -> a; e -> f -> f::journal -> e; d and its child are one room"
    );
}

/// The layers of ARCHITECTURE.md, from the ground up: top-level modules of
/// `src/` (`crate` is lib.rs and main.rs). A module imports only its own
/// layer and the ones below (and no cycle within a layer, by the other check).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "ground floor: the vocabulary",
        &[
            "clock",
            "redact",
            "shards",
            "address",
            "principal",
            "domain",
            "dsp",
        ],
    ),
    (
        "settings and observability",
        &["config", "telemetry", "metrics", "tls"],
    ),
    ("the actor runtime", &["supervisors"]),
    (
        "transport, state, identity",
        &["bus", "store", "auth", "crypto"],
    ),
    ("routing to actors", &["registry"]),
    (
        "cluster, domain actors, generated data",
        &["cluster", "actors", "synthetic"],
    ),
    ("the faces", &["api", "simulate", "demo"]),
    ("the process", &["node", "cli", "crate"]),
];

/// The layer of a module (by its top-level module), or `None` if no layer names it.
fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").nth(1).unwrap_or("crate");
    LAYERS.iter().position(|(_, units)| units.contains(&top))
}

/// Imports that run from a lower layer up to a higher one.
fn upward(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (a, bs) in edges {
        if a.split("::").any(|seg| seg == "tests") {
            continue;
        }
        for b in bs {
            let (la, lb) = (layer_of(a), layer_of(b));
            if let (Some(la), Some(lb)) = (la, lb) {
                if lb > la {
                    out.push(format!("{a} ({}) -> {b} ({})", LAYERS[la].0, LAYERS[lb].0));
                }
            }
        }
    }
    out
}

#[test]
fn every_module_of_src_has_a_layer_and_imports_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let unlayered: BTreeSet<&str> = mods
        .keys()
        .filter(|m| layer_of(m).is_none())
        .map(|m| m.split("::").nth(1).unwrap_or("crate"))
        .collect();
    assert!(
        unlayered.is_empty(),
        "top-level modules without a layer (add them to LAYERS and to ARCHITECTURE.md): {unlayered:?}"
    );
    let up = upward(&edges(&mods));
    assert!(up.is_empty(), "imports up the layers: {up:#?}");
}

#[test]
fn the_layer_check_sees_an_import_up_the_layers() {
    let mods: BTreeMap<String, String> = [
        (
            "crate::store::journal",
            "use crate::actors::consult::Event;",
        ),
        ("crate::actors::consult", "use crate::store::Store;"),
        ("crate::actors::consult::tests", "use crate::api::x;"),
        ("crate::api", "use crate::actors::consult;"),
    ]
    .into_iter()
    .map(|(m, c)| (m.to_owned(), c.to_owned()))
    .collect();
    let up = upward(&edges(&mods));
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(up[0].starts_with("crate::store::journal"), "{up:?}");
}
