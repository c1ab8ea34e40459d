//! The layering of ARCHITECTURE.md, checked rather than hoped (after
//! rust-analyzer's "tidy" tests): dependencies point one way,
//! `http → flows → actors → storage`. This reads the sources and manifests
//! as text; it runs nothing.
//!
//! - `storage/` knows nothing of actors, the binary, actix, HTTP or JSON;
//! - `actors/` knows nothing of the binary, HTTP clients or servers, URLs or
//!   wire JSON;
//! - `src/flows/` (the sagas across actors) never imports `src/http`, and
//!   runs on the core (`app::Core`), not on the HTTP state (`app::App`).

mod common;

use std::path::{Path, PathBuf};

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
        forbidden: &["crate::http", "super::http", "warp::", "hyper"],
        forbidden_deps: &[],
    },
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    common::files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")).collect()
}

/// The code of a line: comments and string literals are not imports.
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let mut in_string = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => in_string = !in_string,
            '\\' if in_string => {
                chars.next();
            }
            '/' if !in_string && chars.peek() == Some(&'/') => break,
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
