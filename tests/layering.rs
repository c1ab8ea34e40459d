//! The layering of ARCHITECTURE.md, checked rather than hoped (after
//! rust-analyzer's "tidy" tests): dependencies point one way,
//! `http → flows → actors → storage`. This reads the sources and manifests
//! as text; it runs nothing.
//!
//! - `storage/` knows nothing of actors, the binary, actix, HTTP or JSON;
//! - `actors/` knows nothing of the binary, HTTP clients or servers, URLs or
//!   wire JSON;
//! - `src/flows/` (the sagas across actors) never imports `src/http` nor any
//!   wire JSON, and runs on the core (`app::Core`), not on the HTTP state
//!   (`http::App`);
//! - the binary's own modules form no cycle, and neither the flows nor the
//!   core reach the edges (`http`, `jobs`, `server`) through any other module.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

struct Rule {
    /// A folder of the repository.
    dir: &'static str,
    /// Paths its code must not name.
    forbidden: &'static [&'static str],
    /// Dependencies its manifest must not declare (`Cargo.toml` beside `dir`).
    forbidden_deps: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        dir: "storage/src",
        forbidden: &[
            "pelago_actors",
            "pelago_card",
            "actix",
            "warp::",
            "reqwest",
            "hyper",
            "serde_json",
            "http::",
        ],
        forbidden_deps: &[
            "pelago-actors",
            "pelago-card",
            "actix",
            "warp",
            "reqwest",
            "hyper",
            "serde_json",
            "http",
        ],
    },
    Rule {
        dir: "actors/src",
        forbidden: &["pelago_card", "warp::", "reqwest", "hyper", "serde_json", "http::", "url::"],
        forbidden_deps: &["pelago-card", "warp", "reqwest", "hyper", "serde_json", "http", "url"],
    },
    Rule {
        dir: "src/flows",
        // No HTTP, and no wire JSON of any side: the flows speak the ports' types.
        forbidden: &[
            "crate::http",
            "super::http",
            "warp::",
            "hyper",
            "serde_json",
            "channel_wire",
            "gateway_wire",
            "marketplace_wire",
        ],
        forbidden_deps: &[],
    },
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    common::files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")).collect()
}

/// The code of a line: comments, string and quote-character literals are not imports.
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let (mut in_string, mut in_comment) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if in_comment && chars.peek() == Some(&'/') => {
                chars.next();
                in_comment = false;
            }
            _ if in_comment => {}
            '"' => in_string = !in_string,
            '\\' if in_string => {
                chars.next();
            }
            // `'"'`: a character, not the start of a string.
            '\'' if !in_string && chars.clone().take(2).eq(['"', '\'']) => {
                chars.nth(1);
            }
            '/' if !in_string && chars.peek() == Some(&'/') => break,
            '/' if !in_string && chars.peek() == Some(&'*') => in_comment = true,
            _ if !in_string => code.push(c),
            _ => {}
        }
    }
    code
}

/// Whether `code` names `path` as a path (not as part of a longer name).
fn names(code: &str, path: &str) -> bool {
    code.match_indices(path).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn dependencies_point_one_way() {
    let mut breaches = Vec::new();
    for rule in RULES {
        let dir = root().join(rule.dir);
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = code_of(line);
                for path in rule.forbidden {
                    if names(&code, path) {
                        breaches.push(format!(
                            "{}:{}: names `{path}`: {}",
                            file.display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
        let manifest = dir.parent().unwrap().join("Cargo.toml");
        if !rule.forbidden_deps.is_empty() {
            let toml: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
            for section in ["dependencies", "build-dependencies"] {
                let Some(deps) = toml.get(section).and_then(|d| d.as_table()) else { continue };
                for dep in rule.forbidden_deps {
                    if deps.contains_key(*dep) {
                        breaches.push(format!("{}: [{section}] declares `{dep}`", manifest.display()));
                    }
                }
            }
        }
    }
    assert!(breaches.is_empty(), "layering broken (ARCHITECTURE.md):\n{}", breaches.join("\n"));
}

/// The binary's top-level module a source file belongs to (`src/flows/x.rs`
/// → `flows`); the crate roots belong to none.
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root().join("src")).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The top-level modules `code` names: `crate::NAME`, the items of a
/// `use crate::{...}` group, and the same after as many `super::` as the
/// file is deep below the crate root (`depth`: 1 for `src/x.rs` and
/// `src/x/mod.rs`, 2 for `src/x/y.rs`).
fn modules_named(code: &str, depth: usize) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    // Where a path begins: not inside a longer name or after another segment.
    let starts_a_path = |at: usize| {
        !code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    };
    let from_crate = code.match_indices("crate::").filter(|(at, _)| starts_a_path(*at)).map(|(at, _)| at + 7);
    let from_supers =
        code.match_indices("super::").filter(|(at, _)| starts_a_path(*at)).filter_map(|(at, _)| {
            let supers = code.as_bytes()[at..].chunks(7).take_while(|c| *c == b"super::").count();
            (supers == depth).then_some(at + 7 * supers)
        });
    let mut found = BTreeSet::new();
    for after in from_crate.chain(from_supers) {
        let rest = &code[after..];
        let Some(group) = rest.strip_prefix('{') else {
            found.insert(ident(rest));
            continue;
        };
        let (mut depth, mut item_start) = (0, true);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && !c.is_whitespace() => {
                    found.insert(ident(&group[i..]));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

/// Module → the other top-level modules its files name.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&root().join("src")) {
        let Some(module) = module_of(&file) else { continue };
        let parts = file.strip_prefix(root().join("src")).unwrap().components().count();
        let depth = parts - usize::from(file.file_name().is_some_and(|n| n == "mod.rs"));
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests (inline `mod tests`, one level deeper) end what is read.
        let code: String = text
            .lines()
            .take_while(|l| l.trim() != "#[cfg(test)]")
            .map(code_of)
            .collect::<Vec<_>>()
            .join("\n");
        let named = modules_named(&code, depth);
        graph.entry(module.clone()).or_default().extend(named.into_iter().filter(|m| *m != module));
    }
    graph
}

/// A cycle of the graph, if it has one (depth-first, white/grey/black).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].iter().cloned().chain([node.to_owned()]).collect());
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, path) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|start| visit(start, graph, &mut done, &mut Vec::new()))
}

fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut next = vec![from.to_owned()];
    while let Some(node) = next.pop() {
        for m in graph.get(&node).into_iter().flatten() {
            if seen.insert(m.clone()) {
                next.push(m.clone());
            }
        }
    }
    seen
}

#[test]
fn the_binary_s_modules_form_no_cycle_and_the_flows_never_reach_the_edges() {
    let graph = module_graph();
    assert!(
        graph.contains_key("flows") && graph.contains_key("http"),
        "the module graph was not read: {graph:?}"
    );
    // `jobs` names `app` and `flows` only inside its `use crate::{...}` group.
    assert!(graph["jobs"].contains("flows"), "the reader misses `use crate::{{...}}` groups: {graph:?}");
    if let Some(cycle) = cycle(&graph) {
        panic!("the binary's modules import each other in a loop: {}", cycle.join(" → "));
    }
    for lower in ["flows", "app"] {
        let reached: Vec<_> = reachable(&graph, lower)
            .into_iter()
            .filter(|m| ["http", "jobs", "server"].contains(&m.as_str()))
            .collect();
        assert!(reached.is_empty(), "`{lower}` reaches the edge modules {reached:?} (ARCHITECTURE.md)");
    }
}

#[test]
fn the_module_reader_sees_groups_paths_and_cycles() {
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let named = modules_named("use crate::{app::Core, flows::{self, Error}, http as h};", 2);
    assert_eq!(named, set(&["app", "flows", "http"]));
    assert_eq!(modules_named("let e = crate::http::errors::x();", 3), set(&["http"]));
    assert!(modules_named("use super::keys;", 2).is_empty(), "a sibling, inside the same module");
    assert_eq!(modules_named("use super::keys;", 1), set(&["keys"]));
    assert_eq!(modules_named("use super::super::{jobs, server::x};", 2), set(&["jobs", "server"]));
    assert!(modules_named("use super::super::jobs;", 3).is_empty());
    assert!(modules_named("use my_crate::thing; a::crate::x; my_super::y;", 1).is_empty());
    assert!(
        modules_named(&code_of("let q = '\"'; /* crate::http */ let r = crate::jobs::x();"), 1)
            == set(&["jobs"])
    );
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).into()).or_default().insert((*b).into());
        }
        g
    };
    assert_eq!(cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap().len(), 4);
    assert!(cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_none());
    assert_eq!(reachable(&graph(&[("a", "b"), ("b", "c")]), "a"), BTreeSet::from(["b".into(), "c".into()]));
}

#[test]
fn the_checker_sees_what_it_must_and_ignores_comments_and_strings() {
    assert!(names(&code_of("use pelago_actors::ledger;"), "pelago_actors"));
    assert!(names(&code_of("    let x = crate::http::errors::ApiError::internal();"), "crate::http"));
    assert!(!names(&code_of("//! talks to warp:: in a comment"), "warp::"));
    assert!(!names(&code_of(r#"let s = "reqwest is a word here";"#), "reqwest"));
    assert!(!names(&code_of("use my_http::Thing;"), "http::"));
    assert!(names(&code_of("fn f() -> http::StatusCode { todo() } // http"), "http::"));
    // The rules reach real folders.
    for rule in RULES {
        assert!(!rust_files(&root().join(rule.dir)).is_empty(), "{} has no sources", rule.dir);
    }
}
