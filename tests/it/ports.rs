//! The ports speak domain types only: no git2, HTTP client, GitHub client, SQL, model client or
//! raw JSON type appears in the code of a port module (comments may name what implements it).
//! `Cargo.toml` keeps the I/O crates out of the core; `serde_json` is a core dependency, so its
//! `Value` is what this test guards most.

use std::path::Path;

/// Whole modules that are ports or the error policy every port shares.
const PORT_MODULES: &[&str] = &[
    "src/github.rs",
    "src/gitops/repo.rs",
    "src/failure.rs",
    "src/retry.rs",
    "src/canary/sample.rs",
    "src/rollout/store.rs",
];

/// Ports that share a module with pure helpers (the model's answer is parsed as JSON): only the
/// trait and its error type are checked there.
const PORT_ITEMS: &[(&str, &str)] = &[
    ("src/risk/model.rs", "pub trait RiskModel"),
    ("src/risk/model.rs", "pub enum LlmError"),
];

const FOREIGN: &[&str] = &[
    "git2",
    "reqwest",
    "octocrab",
    "serde_json",
    "rusqlite",
    "async_openai",
    "hyper",
    "axum",
];

fn source(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/core")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// The code of `text`, without comment lines (docs may say "the git2 writer implements this").
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l))
        .collect()
}

/// The item starting at `start` up to its closing brace at the start of a line.
fn item<'a>(text: &'a str, start: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not found"));
    let len = text[from..]
        .find("\n}\n")
        .map_or(text.len() - from, |end| end + 3);
    &text[from..from + len]
}

fn foreign_mentions(what: &str, text: &str) -> Vec<String> {
    code_lines(text)
        .into_iter()
        .flat_map(|(n, line)| {
            FOREIGN
                .iter()
                .filter(move |f| line.contains(*f))
                .map(move |f| format!("{what}:{n}: {f} in `{}`", line.trim()))
        })
        .collect()
}

#[test]
fn port_modules_name_no_io_or_raw_json_type() {
    let mut found = Vec::new();
    for path in PORT_MODULES {
        found.extend(foreign_mentions(path, &source(path)));
    }
    for (path, start) in PORT_ITEMS {
        let text = source(path);
        found.extend(foreign_mentions(path, item(&text, start)));
    }
    assert!(
        found.is_empty(),
        "foreign types in ports:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_foreign_type_in_code_but_not_in_comments() {
    let text = "//! the git2 writer implements this\npub fn f() -> serde_json::Value {}\n";
    let found = foreign_mentions("x.rs", text);
    assert_eq!(
        found,
        ["x.rs:2: serde_json in `pub fn f() -> serde_json::Value {}`"]
    );
    let trait_only = item(
        "pub fn a() -> serde_json::Value {}\npub trait P {\n    fn p(&self);\n}\nfn b() {}\n",
        "pub trait P",
    );
    assert_eq!(trait_only, "pub trait P {\n    fn p(&self);\n}\n");
}
