//! Tidy: the pure core (`model`, `workflow`, `boot`, `render`, `inventory`)
//! does no I/O and depends on no adapter. Reads their source and fails,
//! naming file and line, on a forbidden path (ARCHITECTURE.md, Invariants).

use crate::harness::repo;
use std::path::{Path, PathBuf};

/// Crates the core never uses (matched as a path prefix: `tokio_util` too).
const CRATES: &[&str] = &["tokio", "sqlx"];
/// `std` paths that do I/O or read the clock or the environment.
const STD: &[&str] = &[
    "std::fs",
    "std::io",
    "std::env",
    "std::process",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
];
/// Names that mean I/O wherever they appear (grouped imports included).
const WORDS: &[&str] = &[
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "SystemTime::now",
    "Instant::now",
];
/// Modules of this crate the core never reaches into.
const MODULES: &[&str] = &[
    "store", "dhcp", "tftp", "http", "daemon", "engine", "power", "config", "admin",
];

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `needle` in `hay` with no identifier character right before it (and, if
/// `whole`, none right after it).
fn has_word(hay: &str, needle: &str, whole: bool) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = hay[i + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_ident(c));
        before && (!whole || after)
    })
}

/// Every forbidden use in `text`: (1-based line, what). Comments are skipped;
/// `crate::{…}` groups are followed across lines.
pub fn violations(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // Brace depth inside a `crate::{` group (0: not in one).
    let mut group = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("");
        let mut hit = |what: String| out.push((i + 1, what));
        for c in CRATES {
            if has_word(line, c, false) {
                hit(format!("`{c}`"));
            }
        }
        for p in STD {
            if has_word(line, p, true) {
                hit(format!("`{p}`"));
            }
        }
        if has_word(line, "std::{", false) && has_word(line, "fs", true) {
            hit("`std::fs`".into());
        }
        for w in WORDS {
            if has_word(line, w, true) && !has_word(line, &format!("std::net::{w}"), true) {
                hit(format!("`{w}`"));
            }
        }
        for m in MODULES {
            if has_word(line, &format!("crate::{m}"), true) {
                hit(format!("`crate::{m}`"));
            }
        }
        // `use crate::{store, model::Mac};`, possibly over several lines.
        let mut rest = line;
        if group == 0 {
            match line.find("crate::{") {
                Some(at) => {
                    rest = &line[at + "crate::{".len()..];
                    group = 1;
                }
                None => continue,
            }
        }
        let mut word = String::new();
        for ch in rest.chars().chain(std::iter::once(' ')) {
            if is_ident(ch) {
                word.push(ch);
                continue;
            }
            if group == 1 && MODULES.contains(&word.as_str()) {
                hit(format!("`crate::{word}`"));
            }
            word.clear();
            match ch {
                '{' => group += 1,
                '}' => {
                    group -= 1;
                    if group == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The core's source files.
fn core_files() -> Vec<PathBuf> {
    let src = repo().join("src");
    let mut files: Vec<PathBuf> = [
        "model.rs",
        "workflow.rs",
        "boot.rs",
        "render.rs",
        "template.rs",
        "diagnose.rs",
        "inventory.rs",
        // Which answer a DNS name gets: the pure part of the `dns` adapter.
        "dns/names.rs",
    ]
    .iter()
    .map(|f| src.join(f))
    .collect();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    walk(&src.join("workflow"), &mut files);
    files
}

#[test]
fn core_modules_do_no_io_and_use_no_adapter() {
    let files = core_files();
    assert!(files.len() >= 6, "{files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let shown = f.strip_prefix(repo()).unwrap_or(f).display().to_string();
        for (line, what) in violations(&text) {
            found.push(format!("{shown}:{line}: uses {what}"));
        }
    }
    assert!(
        found.is_empty(),
        "the pure core (model, workflow, boot, template, render, inventory) must do no I/O \
         and use no adapter (ARCHITECTURE.md, Invariants):\n{}",
        found.join("\n")
    );
}

/// The check itself catches what it is for (so the test above cannot pass
/// by matching nothing).
#[test]
fn tidy_check_catches_forbidden_uses() {
    let sample = "\
//! Doc comment naming crate::store and tokio: fine.
use crate::model::Mac;
use tokio::sync::watch;
fn f() -> i64 {
    crate::store::now_ms() // tokio in a comment is fine
}
use crate::{
    inventory::Inventory,
    dhcp::Answer,
};
use crate::{render::{RenderKind, Urls}, config};
use std::{collections::HashMap, fs};
use std::net::{Ipv4Addr, UdpSocket};
use tokio_util::sync::CancellationToken;
fn g() { let _ = std::fs::read(\"x\"); let _ = std::time::Instant::now(); }
let storehouse = crate::storehouse::x(); // not crate::store
";
    let got = violations(sample);
    assert_eq!(
        got,
        vec![
            (3, "`tokio`".to_string()),
            (5, "`crate::store`".to_string()),
            (9, "`crate::dhcp`".to_string()),
            (11, "`crate::config`".to_string()),
            (12, "`std::fs`".to_string()),
            (13, "`UdpSocket`".to_string()),
            (14, "`tokio`".to_string()),
            (15, "`std::fs`".to_string()),
            (15, "`Instant::now`".to_string()),
        ]
    );
    // Clean code passes.
    assert!(violations(
        "use crate::model::{Arch, Mac};\nuse crate::inventory::Inventory;\nuse std::net::Ipv4Addr;\n"
    )
    .is_empty());
}

/// `crate::X` references of each top-level module of `src/` (a module is
/// `src/X.rs` with `src/X/`), in the module's own files.
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = repo().join("src");
    let mut g: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src, &mut files);
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let edges = g.entry(top.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                edges.insert(name);
            }
        }
    }
    g
}

/// A cycle in `g`, if there is one.
fn find_cycle(
    g: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn dfs(
        v: &str,
        g: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        state: &mut std::collections::HashMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        path.push(v.to_string());
        for w in g.get(v).into_iter().flatten() {
            match state.get(w.as_str()) {
                Some(1) => {
                    let at = path.iter().position(|p| p == w).unwrap();
                    let mut c = path[at..].to_vec();
                    c.push(w.clone());
                    return Some(c);
                }
                None => {
                    if let Some(c) = dfs(w, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = std::collections::HashMap::new();
    for v in g.keys() {
        if !state.contains_key(v.as_str()) {
            if let Some(c) = dfs(v, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn find_cycle_finds_one() {
    let g = |edges: &[(&str, &str)]| {
        let mut g: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "b")])),
        Some(vec!["b".to_string(), "c".into(), "b".into()])
    );
}

#[test]
fn top_level_modules_import_no_circle() {
    let g = module_graph();
    // The layering the architecture names: the core below the adapters.
    for (from, to) in [
        ("inventory", "config"),
        ("inventory", "render"),
        ("render", "config"),
        ("http", "daemon"),
        ("boot", "dhcp"),
        ("api", "http"),
        ("api", "cli"),
    ] {
        assert!(
            !g.get(from).is_some_and(|e| e.contains(to)),
            "{from} must not import {to}"
        );
    }
    if let Some(c) = find_cycle(&g) {
        panic!("import circle among src/'s modules: {}", c.join(" -> "));
    }
}
