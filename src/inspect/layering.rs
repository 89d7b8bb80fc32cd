//! Checks the promise of `inspect.rs`: layers only point down.
//!
//! Reads every `.rs` file under `src/inspect`, resolves each `crate::inspect::…` and
//! `super::…` path to the top-level module it names, and fails on an arrow from a layer
//! to a layer above it, from a layer-neutral module into any layer, or on a cycle
//! between top-level modules. A text scan, not the compiler's view: enough because
//! rustfmt keeps paths on one line and inline modules closed on their own indentation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; each may use the ones before it.
const LAYERS: [&str; 5] = ["image", "partition", "volume", "fs", "os"];
/// Shared by all layers; they may use each other but no layer.
const NEUTRAL: [&str; 10] = [
    "bytes",
    "cache",
    "caps",
    "crc32c",
    "fat_boot",
    "http_error",
    "report",
    "resources",
    "source",
    "work",
];
/// Above every layer: wires them together.
const TOP: [&str; 2] = ["pipeline", "layering"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Neutral,
    Layer(usize),
    Top,
}

fn rank(module: &str) -> Option<Rank> {
    if NEUTRAL.contains(&module) {
        Some(Rank::Neutral)
    } else if TOP.contains(&module) {
        Some(Rank::Top)
    } else {
        LAYERS.iter().position(|l| *l == module).map(Rank::Layer)
    }
}

/// Module path of `file` below `inspect` (`fs/probe/fat.rs` -> `[fs, probe, fat]`).
fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts
}

/// Identifiers a path names after its prefix: `fs::x` -> `[fs]`, `{fs, image}` -> both.
fn named(rest: &str) -> Vec<String> {
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut out = Vec::new();
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => out.push(std::mem::take(&mut item)),
                _ => item.push(c),
            }
        }
        out.push(item);
        return out
            .iter()
            .filter_map(|i| i.trim().split("::").next().map(str::to_string))
            .filter(|i| !i.is_empty() && i != "self")
            .collect();
    }
    let ident: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        Vec::new()
    } else {
        vec![ident]
    }
}

/// Top-level modules of `inspect` that the file at module path `path` refers to.
fn references(path: &[String], text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut inline: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if inline.last().is_some_and(|(i, _)| *i == indent) && trimmed.starts_with('}') {
            inline.pop();
        }
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        if let Some(at) = words.iter().position(|w| *w == "mod") {
            if words.last() == Some(&"{") && at + 3 == words.len() {
                inline.push((indent, words[at + 1].to_string()));
            }
        }
        let here: Vec<String> = path
            .iter()
            .cloned()
            .chain(inline.iter().map(|(_, m)| m.clone()))
            .collect();
        let mut rest = line;
        loop {
            let (at, absolute) = match (rest.find("crate::inspect::"), rest.find("super::")) {
                (Some(c), Some(s)) if c <= s => (c, true),
                (Some(c), None) => (c, true),
                (_, Some(s)) => (s, false),
                (None, None) => break,
            };
            rest = &rest[at..];
            if absolute {
                rest = &rest["crate::inspect::".len()..];
                out.extend(named(rest));
                continue;
            }
            let mut supers = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                supers += 1;
                rest = r;
            }
            // `super` from a file module goes to its parent; deeper than the root of
            // `inspect` leaves it (not our business).
            if supers > here.len() {
                continue;
            }
            let base = &here[..here.len() - supers];
            match base.first() {
                Some(top) => {
                    out.insert(top.clone());
                }
                None => out.extend(named(rest)),
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Arrows between top-level modules, with one file that draws each.
fn graph(root: &Path) -> BTreeMap<(String, String), PathBuf> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let path = module_path(root, &file);
        let from = path[0].clone();
        let text = std::fs::read_to_string(&file).unwrap();
        for to in references(&path, &text) {
            if to != from && rank(&to).is_some() {
                edges.entry((from.clone(), to)).or_insert(file.clone());
            }
        }
    }
    edges
}

/// The arrows that break the layering rules, as messages.
fn violations(edges: &BTreeMap<(String, String), PathBuf>) -> Vec<String> {
    let mut bad = Vec::new();
    for ((from, to), file) in edges {
        let (Some(f), Some(t)) = (rank(from), rank(to)) else {
            bad.push(format!("{}: {from} or {to} is in no layer", file.display()));
            continue;
        };
        let allowed = match f {
            Rank::Top => true,
            Rank::Neutral => t == Rank::Neutral,
            Rank::Layer(_) => t < f,
        };
        if !allowed {
            bad.push(format!("{}: {from} uses {to} above it", file.display()));
        }
    }
    // A cycle needs an arrow back; among allowed arrows only neutral modules can form one.
    let next = |m: &str| -> Vec<String> {
        edges
            .keys()
            .filter(|(f, _)| f == m)
            .map(|(_, t)| t.clone())
            .collect()
    };
    for start in edges
        .keys()
        .map(|(f, _)| f.clone())
        .collect::<BTreeSet<_>>()
    {
        let mut seen = BTreeSet::new();
        let mut stack = next(&start);
        while let Some(m) = stack.pop() {
            if m == start {
                bad.push(format!("{start} reaches itself through its imports"));
                break;
            }
            if seen.insert(m.clone()) {
                stack.extend(next(&m));
            }
        }
    }
    bad
}

#[test]
fn layers_only_point_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/inspect");
    let edges = graph(&root);
    // The scan must see the arrows that exist, or it proves nothing.
    assert!(edges.contains_key(&("os".to_string(), "fs".to_string())));
    assert!(edges.contains_key(&("fs".to_string(), "source".to_string())));
    assert!(edges.contains_key(&("pipeline".to_string(), "image".to_string())));
    let bad = violations(&edges);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn upward_imports_and_cycles_are_caught() {
    let path = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
    // `super::super::fs` from partition/mbr.rs's test module is the fs layer.
    let text = "mod tests {\n    use super::super::super::fs::probe;\n}\n";
    assert!(references(&path("partition/mbr"), text).contains("fs"));
    // `super::` inside a file goes to the file's own layer.
    assert_eq!(
        references(&path("fs/probe/fat"), "use super::{read_array, Probed};"),
        BTreeSet::from(["fs".to_string()])
    );
    // A format's part one folder down (`volume/lvm2/map.rs`): `super::` is the format and
    // `super::super::` the layer, both inside `volume`; four `super`s from the test module
    // of `image/qcow2/header.rs` reach the root and name the module after them.
    assert_eq!(
        references(
            &path("volume/lvm2/map"),
            "use super::super::raid::RaidSource;\nuse super::vg::VgMeta;"
        ),
        BTreeSet::from(["volume".to_string()])
    );
    let text = "mod tests {\n    use super::super::super::super::fs::probe;\n}\n";
    assert_eq!(
        references(&path("image/qcow2/header"), text),
        BTreeSet::from(["fs".to_string()])
    );
    let refs = references(
        &path("source"),
        "use crate::inspect::{bytes, image::ReadError};",
    );
    assert_eq!(refs, BTreeSet::from(["bytes".into(), "image".into()]));

    let edges = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(f, t)| ((f.to_string(), t.to_string()), PathBuf::from(f)))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(violations(&edges(&[("os", "fs"), ("fs", "source")])).is_empty());
    assert_eq!(violations(&edges(&[("partition", "fs")])).len(), 1);
    assert_eq!(violations(&edges(&[("source", "image")])).len(), 1);
    // Two neutral modules using each other: allowed arrows, but a cycle.
    let cycle = violations(&edges(&[("report", "caps"), ("caps", "report")]));
    assert_eq!(cycle.len(), 2, "{cycle:?}");
}
