//! Keeps the broker's layers apart. Reads every non-test source file of
//! the crate, collects the top-level modules it names through `crate::`
//! paths (plain paths and `use crate::{...}` groups), and checks:
//! - `log/` names nothing outside `log/` and `error`;
//! - `raft/` names nothing outside `raft/`, `log/` and `error`: it drives
//!   groups without knowing what they replicate;
//! - the front ends (`server/`, and `kafka/` once it exists) are named by
//!   no other module, and the `broker` only by the front ends;
//! - no two top-level modules name each other through any chain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that translate a protocol to broker operations.
const FRONT_ENDS: &[&str] = &["server", "kafka"];

/// Modules each listed module may name (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[("log", &["error"]), ("raft", &["log", "error"])];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether a file holds only tests (`tests.rs`, `*_tests.rs`).
fn is_test_file(p: &Path) -> bool {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    stem == "tests" || stem.ends_with("_tests")
}

/// The source without comments and without an inline `mod tests { .. }`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Top-level modules named through `crate::` in `code`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c, d::{e, f}}`: the first segment of each
            // top-level item.
            let mut depth = 1;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        let name = ident_at(&group[j..]);
                        if !name.is_empty() {
                            out.insert(name.to_owned());
                        }
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// Module → (named module → files that name it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph = Graph::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap_or(&f);
        let rel_s = rel.to_string_lossy().into_owned();
        if rel_s == "lib.rs" || rel_s == "main.rs" || is_test_file(&f) {
            continue;
        }
        let top = rel_s
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_owned();
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let deps = graph.entry(top.clone()).or_default();
        for m in named_modules(&code_of(&text)) {
            if m != top {
                deps.entry(m).or_default().insert(rel_s.clone());
            }
        }
    }
    graph
}

fn violations(graph: &Graph) -> Vec<String> {
    let mut bad = Vec::new();
    for (module, deps) in graph {
        for (dep, files) in deps {
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            let mut refuse = |why: &str| {
                bad.push(format!(
                    "{module} names {dep} ({}): {why}",
                    files.join(", ")
                ));
            };
            if let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| m == module)
                && !allowed.contains(&dep.as_str())
            {
                refuse(&format!("{module}/ may name only {allowed:?}"));
            }
            if FRONT_ENDS.contains(&dep.as_str()) {
                refuse("front ends sit on top; nothing below names them");
            }
            if dep == "broker" && !FRONT_ENDS.contains(&module.as_str()) {
                refuse("only the front ends name the broker; pass a narrow handle instead");
            }
        }
    }
    // Circles: a module that reaches itself.
    for start in graph.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for dep in graph.get(&m).into_iter().flat_map(|d| d.keys()) {
                if dep == start {
                    let mut p = path.clone();
                    p.push(dep.clone());
                    // Report each circle once, from its smallest module.
                    if p.iter().all(|x| x >= start) {
                        bad.push(format!("circle: {}", p.join(" -> ")));
                    }
                } else if seen.insert(dep.clone()) {
                    let mut p = path.clone();
                    p.push(dep.clone());
                    stack.push((dep.clone(), p));
                }
            }
        }
    }
    bad
}

#[test]
fn layers_hold() {
    let graph = module_graph();
    assert!(
        graph.contains_key("log") && graph.contains_key("raft") && graph.contains_key("server"),
        "the layering check found no sources: {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    let bad = violations(&graph);
    assert!(bad.is_empty(), "layering violated:\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_wrong_imports() {
    // A raft file naming the partition, log naming metrics, tier naming
    // the broker, and a circle between two modules.
    let mut g = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert(format!("{a}/x.rs"));
    };
    edge(&mut g, "raft", "partition");
    edge(&mut g, "log", "metrics");
    edge(&mut g, "tier", "broker");
    edge(&mut g, "cluster", "groups");
    edge(&mut g, "groups", "cluster");
    let bad = violations(&g);
    for want in [
        "raft names partition",
        "log names metrics",
        "tier names broker",
        "circle: cluster -> groups -> cluster",
    ] {
        assert!(
            bad.iter().any(|b| b.starts_with(want)),
            "{want:?} not reported in {bad:?}"
        );
    }
    assert_eq!(
        named_modules(
            "use crate::{error::Result, log::{Log, now_ms}, raft};\nlet x = crate::tier::serve::read;"
        ),
        ["error", "log", "raft", "tier"].map(String::from).into()
    );
}
