//! The architecture as tests, so it is a fact rather than a drawing: `cargo tree` of the core crate
//! shows none of the I/O crates, and no top-level module of either crate uses one of a higher
//! layer or forms an import cycle. The layers are read from the "Layers" block of
//! ARCHITECTURE.md, so the document and this test cannot drift apart.
//!
//! The checker reads the source text (no compiler): `use` trees (grouped, nested, multi-line) and
//! `crate::` and `super::` paths anywhere, with comments, strings and character literals skipped.
//! Paths into `deploybot_core` need no check: the core is below every module of the root crate,
//! and Cargo keeps it from naming the root. Test code (`#[cfg(test)]` items and the files of
//! `#[cfg(test)] mod x;`) is not held to the layers: like a dev-dependency, it may reach up to
//! build its fixtures. The self-tests at the end feed it made-up sources to show it can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates the core must never depend on, even indirectly: runtimes, HTTP, git, SQL, LLM clients.
const IO_CRATES: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "git2",
    "rusqlite",
    "octocrab",
    "async-openai",
    "tower",
    "mio",
    "libgit2-sys",
    "libsqlite3-sys",
];

#[test]
fn the_core_depends_on_no_io_crate() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", "deploybot-core", "-e", "normal"])
        .args(["--prefix", "none", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree -p deploybot-core: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // Proof that the output was read: the crate itself and a dependency it surely has.
    assert!(
        crates.contains("deploybot-core") && crates.contains("chrono"),
        "unexpected cargo tree output:\n{tree}"
    );
    let found: Vec<&&str> = IO_CRATES.iter().filter(|c| crates.contains(**c)).collect();
    assert!(
        found.is_empty(),
        "deploybot-core depends on I/O crates {found:?}:\n{tree}"
    );
}

#[test]
fn no_module_uses_a_higher_layer_and_no_imports_form_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let specs = layers_from(&doc);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["deploybot_core", "deploybot"],
        "the Layers block lists both crates"
    );
    let mut problems = Vec::new();
    let mut edges = BTreeSet::new();
    for spec in &specs {
        let files = read_sources(&root.join(&spec.src));
        let report = check(spec, &files);
        problems.extend(report.problems);
        edges.extend(
            report
                .edges
                .into_keys()
                .map(|(from, to)| format!("{}: {from} -> {to}", spec.name)),
        );
    }
    // Proof that the imports were read: edges every version of this code base has.
    for edge in [
        "deploybot_core: rollout -> canary",
        "deploybot: shell -> adapters",
        "deploybot: cli -> shell",
    ] {
        assert!(edges.contains(edge), "{edge} not found among {edges:#?}");
    }
    assert!(
        problems.is_empty(),
        "layering (ARCHITECTURE.md, \"Layers\"):\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// The layers, as ARCHITECTURE.md writes them.

/// One crate's top-level modules by layer, lowest first.
#[derive(Debug)]
struct CrateLayers {
    name: String,
    /// The source directory, relative to the repository root.
    src: String,
    layers: Vec<Vec<String>>,
}

/// Parses the ```` ```layers ```` block: `name (src dir):` opens a crate, each indented line after
/// it is a layer, lowest first.
fn layers_from(doc: &str) -> Vec<CrateLayers> {
    let block: Vec<&str> = doc
        .lines()
        .skip_while(|l| l.trim() != "```layers")
        .skip(1)
        .take_while(|l| l.trim() != "```")
        .collect();
    assert!(!block.is_empty(), "no ```layers block in ARCHITECTURE.md");
    let mut specs: Vec<CrateLayers> = Vec::new();
    for line in block.iter().filter(|l| !l.trim().is_empty()) {
        if line.starts_with(char::is_whitespace) {
            let spec = specs
                .last_mut()
                .unwrap_or_else(|| panic!("layer {line:?} before any crate"));
            spec.layers
                .push(line.split_whitespace().map(String::from).collect());
        } else {
            let (name, src) = line
                .trim_end_matches(':')
                .split_once(" (")
                .unwrap_or_else(|| panic!("crate line {line:?} is not `name (src dir):`"));
            specs.push(CrateLayers {
                name: name.to_string(),
                src: src.trim_end_matches(')').to_string(),
                layers: Vec::new(),
            });
        }
    }
    specs
}

// ---------------------------------------------------------------------------------------------
// The checker.

/// A source file: its path inside the crate's source directory (`shell/driver.rs`) and its text.
struct Source {
    rel: String,
    text: String,
}

/// Every `.rs` file under `dir`, except `main.rs` (the binary, a crate of its own).
fn read_sources(dir: &Path) -> Vec<Source> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            let entries = std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            todo.extend(entries.map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            paths.push(p);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| Source {
            rel: p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/"),
            text: std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .filter(|s| s.rel != "main.rs")
        .collect()
}

/// What the checker found in one crate.
struct Report {
    /// (from, to) between top-level modules, with the first place that makes it.
    edges: BTreeMap<(String, String), String>,
    problems: Vec<String>,
}

fn check(spec: &CrateLayers, files: &[Source]) -> Report {
    let layer_of: BTreeMap<&str, usize> = spec
        .layers
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let scanned: Vec<(Vec<String>, &Source, Scan)> = files
        .iter()
        .map(|f| (module_path(&f.rel), f, scan(&f.text)))
        .collect();
    // Files declared by `#[cfg(test)] mod x;` (and everything below them) are test code.
    let test_modules: Vec<Vec<String>> = scanned
        .iter()
        .flat_map(|(module, _, s)| {
            s.test_children.iter().map(move |child| {
                let mut m = module.clone();
                m.push(child.clone());
                m
            })
        })
        .collect();
    let is_test = |m: &[String]| test_modules.iter().any(|t| m.starts_with(t));
    let modules: BTreeSet<String> = scanned
        .iter()
        .filter_map(|(m, _, _)| m.first().cloned())
        .collect();

    let mut problems = Vec::new();
    for m in &modules {
        if !layer_of.contains_key(m.as_str()) {
            problems.push(format!(
                "{}: module `{m}` is on no layer: add it to ARCHITECTURE.md's Layers",
                spec.name
            ));
        }
    }
    for m in layer_of.keys().filter(|m| !modules.contains(**m)) {
        problems.push(format!(
            "{}: ARCHITECTURE.md's Layers list `{m}`, which has no source",
            spec.name
        ));
    }

    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for (module, file, s) in &scanned {
        let Some(from) = module.first() else {
            continue; // the crate root only declares the modules
        };
        if s.test_only || is_test(module) {
            continue;
        }
        for r in &s.refs {
            let mut at = module.clone();
            at.extend(r.scope.iter().cloned());
            let Some(to) = resolve(&r.path, &at).filter(|to| modules.contains(to)) else {
                continue;
            };
            if to == *from {
                continue;
            }
            let place = format!("{}/{}:{}", spec.src, file.rel, r.line);
            if let (Some(&lf), Some(&lt)) = (layer_of.get(from.as_str()), layer_of.get(to.as_str()))
                && lt >= lf
            {
                let where_ = if lt == lf { "beside it" } else { "above it" };
                problems.push(format!(
                    "{place}: `{from}` uses `{to}`, which the Layers put {where_}"
                ));
            }
            edges.entry((from.clone(), to)).or_insert(place);
        }
    }
    problems.extend(cycles(&modules, &edges));
    Report { edges, problems }
}

/// The module path of a file: `shell/driver.rs` -> [shell, driver]; `lib.rs` -> [].
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The top-level module a path names, seen from module `at`, if it names one of this crate's
/// (`crate::x`, or `super::...::x` climbing to the root).
fn resolve(path: &[String], at: &[String]) -> Option<String> {
    let name = match path.first()?.as_str() {
        "crate" => path.get(1),
        "super" => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            if supers < at.len() {
                return None; // still inside the same top-level module
            }
            path.get(supers)
        }
        _ => None,
    }?;
    (!matches!(name.as_str(), "*" | "self" | "super")).then(|| name.clone())
}

/// Every import cycle among top-level modules, with the edges that make it.
fn cycles(modules: &BTreeSet<String>, edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    // Reachability by repeated relaxation: a dozen modules, so the simple way is fast enough.
    let mut reach: BTreeSet<(&str, &str)> = edges
        .keys()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    loop {
        let more: Vec<(&str, &str)> = reach
            .iter()
            .flat_map(|&(a, b)| {
                reach
                    .iter()
                    .filter(move |&&(c, _)| c == b)
                    .map(move |&(_, d)| (a, d))
            })
            .filter(|p| !reach.contains(p))
            .collect();
        if more.is_empty() {
            break;
        }
        reach.extend(more);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for m in modules {
        let m = m.as_str();
        if seen.contains(m) || !reach.contains(&(m, m)) {
            continue;
        }
        let members: BTreeSet<&str> = modules
            .iter()
            .map(String::as_str)
            .filter(|n| *n == m || (reach.contains(&(m, *n)) && reach.contains(&(*n, m))))
            .collect();
        seen.extend(members.iter().copied());
        let inside: Vec<String> = edges
            .iter()
            .filter(|((a, b), _)| members.contains(a.as_str()) && members.contains(b.as_str()))
            .map(|((a, b), place)| format!("{a} -> {b} ({place})"))
            .collect();
        out.push(format!(
            "import cycle between {:?}: {}",
            members,
            inside.join(", ")
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading Rust source text: just enough of the lexer and of `use` trees.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

struct Token {
    tok: Tok,
    line: usize,
}

/// Identifiers, `::` and punctuation, with comments, strings, character literals, lifetimes and
/// numbers dropped: none of them can name a module.
fn tokens(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i + 1, &mut line);
        } else if ch == '\'' {
            i = skip_quote(&c, i);
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            match (word.as_str(), at(i)) {
                ("b" | "c", '"') => i = skip_string(&c, i + 1, &mut line),
                ("b", '\'') => i = skip_quote(&c, i),
                ("r" | "br" | "cr", '"' | '#') if is_raw_string(&c, i) => {
                    i = skip_raw_string(&c, i, &mut line);
                }
                ("r", '#') => i += 1, // a raw identifier: `r#type` reads as `type`
                _ => out.push(Token {
                    tok: Tok::Ident(word),
                    line,
                }),
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::Sep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// Past the closing quote of a string whose body starts at `i`.
fn skip_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 1,
            '"' => return i + 1,
            '\n' => *line += 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Past a character literal (`'a'`, `'\''`, `'\u{1F600}'`) at `i`, or past the quote of a
/// lifetime or label (`'a`), whose name then reads as an identifier.
fn skip_quote(c: &[char], i: usize) -> usize {
    if c.get(i + 1) == Some(&'\\') {
        let mut j = i + 3;
        while j < c.len() && c[j] != '\'' {
            j += 1;
        }
        j + 1
    } else if c.get(i + 2) == Some(&'\'') {
        i + 3
    } else {
        i + 1
    }
}

/// Whether `#`s then `"` start at `i` (after an `r`, `br` or `cr` prefix).
fn is_raw_string(c: &[char], i: usize) -> bool {
    c[i..].iter().find(|ch| **ch != '#') == Some(&'"')
}

fn skip_raw_string(c: &[char], i: usize, line: &mut usize) -> usize {
    let hashes = c[i..].iter().take_while(|ch| **ch == '#').count();
    let mut j = i + hashes + 1;
    while j < c.len() {
        if c[j] == '"'
            && c[j + 1..]
                .iter()
                .take(hashes)
                .filter(|ch| **ch == '#')
                .count()
                == hashes
        {
            return j + 1 + hashes;
        }
        *line += usize::from(c[j] == '\n');
        j += 1;
    }
    j
}

/// A path in the source, with the inline modules (`mod x { ... }`) it sits in.
struct Ref {
    path: Vec<String>,
    scope: Vec<String>,
    line: usize,
}

/// What one file says.
struct Scan {
    refs: Vec<Ref>,
    /// Modules declared `#[cfg(test)] mod x;`, whose files are test code.
    test_children: Vec<String>,
    /// `#![cfg(test)]` at the top: the whole file is test code.
    test_only: bool,
}

fn scan(text: &str) -> Scan {
    let t = tokens(text);
    let ident = |i: usize| match t.get(i).map(|x| &x.tok) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, want: &Tok| t.get(i).is_some_and(|x| x.tok == *want);
    let mut scan = Scan {
        refs: Vec::new(),
        test_children: Vec::new(),
        test_only: false,
    };
    let mut scopes: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let names = |scopes: &[(String, usize)]| scopes.iter().map(|(s, _)| s.clone()).collect();
    while i < t.len() {
        match &t[i].tok {
            Tok::Punct('#') => {
                let inner = is(i + 1, &Tok::Punct('!'));
                let open = i + 1 + usize::from(inner);
                if !is(open, &Tok::Punct('[')) {
                    i += 1;
                    continue;
                }
                let end = matching(&t, open);
                let cfg_test = ident(open + 1) == Some("cfg")
                    && t[open..end]
                        .iter()
                        .any(|x| x.tok == Tok::Ident("test".into()))
                    && !t[open..end]
                        .iter()
                        .any(|x| x.tok == Tok::Ident("not".into()));
                if cfg_test && inner && depth == 0 {
                    scan.test_only = true;
                    return scan;
                }
                i = end + 1;
                if cfg_test && !inner {
                    i = skip_item(&t, i, &mut scan.test_children);
                }
                continue;
            }
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                while scopes.last().is_some_and(|(_, d)| *d > depth) {
                    scopes.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let Some(name) = ident(i + 1)
                    && is(i + 2, &Tok::Punct('{'))
                {
                    scopes.push((name.to_string(), depth + 1));
                }
            }
            // `use` followed by a path: a declaration (not `impl Trait + use<'a>`).
            Tok::Ident(w)
                if w == "use"
                    && (ident(i + 1).is_some()
                        || is(i + 1, &Tok::Sep)
                        || is(i + 1, &Tok::Punct('{'))) =>
            {
                let line = t[i].line;
                let mut paths = Vec::new();
                i = use_tree(&t, i + 1, Vec::new(), &mut paths);
                let scope: Vec<String> = names(&scopes);
                scan.refs.extend(paths.into_iter().map(|path| Ref {
                    path,
                    scope: scope.clone(),
                    line,
                }));
                continue;
            }
            Tok::Ident(w) if matches!(w.as_str(), "crate" | "super") && is(i + 1, &Tok::Sep) => {
                let line = t[i].line;
                let mut path = vec![w.clone()];
                let mut j = i + 1;
                while is(j, &Tok::Sep)
                    && let Some(seg) = ident(j + 1)
                {
                    path.push(seg.to_string());
                    j += 2;
                }
                scan.refs.push(Ref {
                    path,
                    scope: names(&scopes),
                    line,
                });
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    scan
}

/// The index of the bracket closing the one at `open`.
fn matching(t: &[Token], open: usize) -> usize {
    let mut depth = 0i32;
    for (j, x) in t.iter().enumerate().skip(open) {
        match x.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    t.len()
}

/// Past the item starting at `i` (after its attributes): through its `;` or its closing brace,
/// or up to the bracket that closes what it sits in. Notes `mod x;`.
fn skip_item(t: &[Token], mut i: usize, test_children: &mut Vec<String>) -> usize {
    while t.get(i).is_some_and(|x| x.tok == Tok::Punct('#')) {
        i = matching(t, i + 1) + 1;
    }
    let words: Vec<&Tok> = t[i.min(t.len())..].iter().take(6).map(|x| &x.tok).collect();
    let after_vis = match words.first() {
        Some(Tok::Ident(p)) if p == "pub" => {
            if words.get(1) == Some(&&Tok::Punct('(')) {
                4
            } else {
                1
            }
        }
        _ => 0,
    };
    if let (Some(Tok::Ident(m)), Some(Tok::Ident(name)), Some(Tok::Punct(';'))) = (
        words.get(after_vis),
        words.get(after_vis + 1),
        words.get(after_vis + 2),
    ) && m == "mod"
    {
        test_children.push(name.clone());
    }
    let mut depth = 0i32;
    while i < t.len() {
        match t[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']') => depth -= 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            Tok::Punct(';') if depth == 0 => return i + 1,
            _ => {}
        }
        if depth < 0 {
            return i;
        }
        i += 1;
    }
    i
}

/// Reads one use tree from `i` onto `prefix`, pushing every leaf path; returns where it ended
/// (at the `,`, `}` or `;` after it).
fn use_tree(t: &[Token], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    while let Some(x) = t.get(i) {
        match &x.tok {
            Tok::Sep => i += 1,
            Tok::Ident(w) if w == "as" => i += 2,
            Tok::Ident(w) => {
                path.push(w.clone());
                i += 1;
            }
            Tok::Punct('*') => {
                path.push("*".into());
                i += 1;
            }
            Tok::Punct('{') => {
                i += 1;
                while t.get(i).is_some_and(|x| x.tok != Tok::Punct('}')) {
                    i = use_tree(t, i, path.clone(), out);
                    if t.get(i).is_some_and(|x| x.tok == Tok::Punct(',')) {
                        i += 1;
                    }
                }
                return i + 1;
            }
            _ => break,
        }
    }
    out.push(path);
    i
}

// ---------------------------------------------------------------------------------------------
// The checker on made-up sources, so it can be seen to fail.

fn spec(layers: &[&str]) -> CrateLayers {
    CrateLayers {
        name: "toy".into(),
        src: "src".into(),
        layers: layers
            .iter()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect(),
    }
}

fn sources(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(rel, text)| Source {
            rel: rel.to_string(),
            text: text.to_string(),
        })
        .collect()
}

const TOY: &[(&str, &str)] = &[
    ("lib.rs", "pub mod low;\npub mod mid;\npub mod high;\n"),
    ("low.rs", "//! Low.\npub struct L;\n"),
    (
        "mid/mod.rs",
        "//! Mid.\nuse crate::low::L;\npub mod deep;\n",
    ),
    ("mid/deep/mod.rs", "//! Deep.\npub mod x;\n"),
    ("mid/deep/x.rs", "//! X.\npub fn f() {}\n"),
    ("high.rs", "//! High.\nuse crate::{low, mid::deep};\n"),
];

fn problems_with(extra: &[(&str, &str)]) -> Vec<String> {
    let mut files: Vec<(&str, &str)> = TOY.to_vec();
    for (rel, text) in extra {
        files.retain(|(r, _)| r != rel);
        files.push((rel, text));
    }
    check(&spec(&["low", "mid", "high"]), &sources(&files)).problems
}

#[test]
fn the_checker_passes_downward_imports() {
    let report = check(&spec(&["low", "mid", "high"]), &sources(TOY));
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    let edges: Vec<_> = report.edges.into_keys().collect();
    assert_eq!(
        edges,
        [
            ("high".to_string(), "low".to_string()),
            ("high".into(), "mid".into()),
            ("mid".into(), "low".into()),
        ]
    );
}

/// Fails unless one of `problems` says `needle`.
fn assert_reported(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "no problem says {needle:?}: {problems:#?}"
    );
}

#[test]
fn the_checker_sees_an_upward_import_however_it_is_written() {
    for (rel, text, says) in [
        ("low.rs", "use crate::high::H;", "1: `low` uses `high`"),
        (
            "low.rs",
            "pub fn f() { crate::high::g(); }",
            "1: `low` uses `high`",
        ),
        (
            "low.rs",
            "use crate::{\n    mid::deep::x::f, // and\n    high::{self, H},\n};",
            "1: `low` uses `high`",
        ),
        (
            "low.rs",
            "pub use crate::{mid as m};",
            "1: `low` uses `mid`",
        ),
        (
            "mid/deep/x.rs",
            "use super::super::super::high::H;",
            "1: `mid` uses `high`",
        ),
        (
            "mid/deep/x.rs",
            "mod inner { pub fn f() { super::super::super::super::high::g() } }",
            "1: `mid` uses `high`",
        ),
        (
            "low.rs",
            "#[cfg(feature = \"x\")]\nuse crate::high::H;",
            "2: `low` uses `high`",
        ),
    ] {
        let problems = problems_with(&[(rel, text)]);
        assert_reported(
            &problems,
            &format!("src/{rel}:{says}, which the Layers put above it"),
        );
        assert_reported(&problems, "import cycle");
    }
    // A peer is not a lower layer either.
    let problems = check(
        &spec(&["low mid", "high"]),
        &sources(&[
            ("low.rs", "use crate::mid::M;"),
            ("mid.rs", ""),
            ("high.rs", ""),
        ]),
    )
    .problems;
    assert_reported(
        &problems,
        "`low` uses `mid`, which the Layers put beside it",
    );
}

#[test]
fn the_checker_ignores_comments_strings_and_test_code() {
    let problems = problems_with(&[
        (
            "low.rs",
            r###"//! Mentions crate::high::H in its docs.
// use crate::high::H;
/* crate::high /* nested */ crate::mid */
pub const A: &str = "crate::high::H \" crate::mid";
pub const B: &str = r#"crate::high " crate::mid"#;
pub const C: char = '"';
pub const D: &[u8] = b"crate::high";
pub fn e<'a>(s: &'a str) -> &'a str { s }
#[cfg(test)]
mod tests {
    use crate::high::H;
    #[test]
    fn t() { crate::mid::deep::x::f(); }
}
#[cfg(any(test, feature = "test-support"))]
pub fn helper() { crate::high::g(); }
#[cfg(test)]
mod fake;
pub struct L;
"###,
        ),
        ("low/fake.rs", "use crate::high::H;"),
    ]);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_checker_names_modules_missing_from_the_layers_and_layers_without_source() {
    let problems = check(
        &spec(&["low", "mid", "high", "gone"]),
        &sources(&[TOY, &[("extra.rs", "//! Extra.\n")]].concat()),
    )
    .problems;
    assert_reported(&problems, "module `extra` is on no layer");
    assert_reported(&problems, "list `gone`, which has no source");
}
