//! The one way a test gets an outside program (prometheus, promtool, kubectl, chromium, bash,
//! PostgreSQL's initdb): found on `PATH` (or in Debian's versioned PostgreSQL directory), or the
//! test fails naming the Debian package that provides it. A test that passes because its tool is
//! missing would claim something nobody checked.
//!
//! Skipping is an explicit opt-out for machines that cannot install a package: with
//! `DEPLOYBOT_TEST_ALLOW_MISSING_TOOLS=1` a test whose tool is missing says so on the terminal
//! and returns. CI (`.ci/run`) never sets it and installs every package named here.

use std::io::Write as _;
use std::path::PathBuf;

/// The opt-out (documented in README.md's test section).
pub const ALLOW_MISSING: &str = "DEPLOYBOT_TEST_ALLOW_MISSING_TOOLS";

/// `program` on `PATH`. Missing: panics naming the Debian `package` to install, or, under the
/// opt-out, prints a line the terminal shows (libtest captures `eprintln!`, not a direct write to
/// stderr) and returns `None`, for the test to return at once.
pub fn require(program: &str, package: &str) -> Option<PathBuf> {
    if let Some(path) = find(program) {
        return Some(path);
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if std::env::var(ALLOW_MISSING).is_ok_and(|v| v == "1") {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: `{program}` is not installed (Debian package {package}) and \
             {ALLOW_MISSING}=1; it checked nothing ***\n"
        );
        return None;
    }
    panic!(
        "{test} needs `{program}`, which is not on PATH: install Debian's {package} \
         (`apt-get install -y {package}`; .ci/run does). Only where that is impossible, \
         {ALLOW_MISSING}=1 skips such tests, loudly."
    );
}

/// On `PATH`, or in the directory Debian keeps a versioned server's programs in, off `PATH`
/// (`/usr/lib/postgresql/15/bin/initdb`; the newest version when several are installed).
fn find(program: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let version = e.file_name().to_str()?.parse().ok()?;
                Some((version, e.path().join("bin").join(program)))
            })
            .filter(|(_, p)| p.is_file())
            .collect();
        versions.sort();
        versions.pop().map(|(_, p)| p)
    })
}

/// CI must be a machine where every such test runs: `.ci/run` installs each package a test
/// names to [`require`] and never sets the opt-out.
#[test]
fn ci_installs_every_required_package_and_never_opts_out() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect("reading .ci/run");
    assert!(
        !ci.contains(ALLOW_MISSING),
        ".ci/run must not set {ALLOW_MISSING}"
    );
    let installs: Vec<&str> = ci
        .lines()
        .filter(|l| l.contains("apt-get install"))
        .flat_map(str::split_whitespace)
        .collect();
    let mut packages = std::collections::BTreeSet::new();
    let mut files = vec![root.join("tests")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            // Calls with literal arguments: the program, then its package.
            for call in text.split("require(\"").skip(1) {
                if let Some(package) = call.split('"').nth(2) {
                    packages.insert(package.to_string());
                }
            }
        }
    }
    assert!(packages.len() >= 3, "found only {packages:?}");
    for package in &packages {
        assert!(
            installs.contains(&package.as_str()),
            ".ci/run installs no {package}, which a test requires"
        );
    }
}
