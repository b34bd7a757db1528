//! Golden cases: `fixtures/manifests/golden/<case>/` holds `case` (path, change, options),
//! `input.yaml`, and either `expected.yaml` + `changes.txt` or `expected.err`.
//! Refresh with `UPDATE_GOLDEN=1 cargo test --test it manifest::golden` (`support::golden`).

use std::fs;
use std::path::Path;

use deploybot_core::manifest;

use crate::support::golden;

fn golden_dir() -> std::path::PathBuf {
    crate::support::fixtures_dir().join("manifests/golden")
}

/// Runs one case and compares (or, with `UPDATE_GOLDEN=1`, rewrites) its expectations.
fn check(dir: &Path) -> Result<(), String> {
    let case =
        fs::read_to_string(dir.join("case")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let field = |k: &str| {
        case.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_default()
            .to_string()
    };
    let input = fs::read_to_string(dir.join("input.yaml")).unwrap();
    let (change, options) = super::parse_change(&field("change"), &field("options"));
    let result = manifest::apply(&field("path"), &input, &change, &options);
    let mut outputs: Vec<(&str, String)> = Vec::new();
    match &result {
        Ok(edited) => {
            outputs.push(("expected.yaml", edited.text.clone()));
            let changes: String = edited
                .changes
                .iter()
                .map(|c| {
                    format!(
                        "line {}: {}: {:?} -> {:?}\n",
                        c.line, c.location, c.old, c.new
                    )
                })
                .collect();
            outputs.push(("changes.txt", changes));
        }
        Err(e) => outputs.push(("expected.err", format!("{e}\n"))),
    }
    let update = golden::updating();
    let stale = if result.is_ok() {
        ["expected.err"].as_slice()
    } else {
        &["expected.yaml", "changes.txt"]
    };
    let mut problems = Vec::new();
    for name in stale {
        if dir.join(name).exists() {
            if update {
                fs::remove_file(dir.join(name)).unwrap();
            } else {
                problems.push(format!(
                    "{}: {name} exists but the outcome differs",
                    dir.display()
                ));
            }
        }
    }
    for (name, got) in outputs {
        if let Err(e) = golden::compare(&dir.join(name), &got) {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn golden_cases() {
    let mut dirs: Vec<_> = fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20, "golden cases went missing: {dirs:?}");
    let failures: Vec<String> = dirs.iter().filter_map(|d| check(d).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The golden outputs of successful edits must differ from their inputs only on the lines the
/// edit reports, or the "only the target's bytes" promise is not what the goldens pin.
#[test]
fn golden_edits_touch_only_reported_lines() {
    if golden::updating() {
        return; // golden_cases is rewriting the files right now
    }
    for dir in fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
    {
        let Ok(expected) = fs::read_to_string(dir.join("expected.yaml")) else {
            continue;
        };
        let input = fs::read_to_string(dir.join("input.yaml")).unwrap();
        let changes = fs::read_to_string(dir.join("changes.txt")).unwrap();
        let has_insert = changes.contains(": \"\" -> ") || changes.contains(" -> \"\"");
        let diff = similar::TextDiff::from_lines(&input, &expected);
        let changed_old: Vec<usize> = diff
            .iter_all_changes()
            .filter(|c| c.tag() == similar::ChangeTag::Delete)
            .filter_map(|c| c.old_index())
            .map(|i| i + 1)
            .collect();
        if !has_insert {
            let reported: Vec<usize> = changes
                .lines()
                .filter_map(|l| l.strip_prefix("line ")?.split(':').next()?.parse().ok())
                .collect();
            for line in &changed_old {
                assert!(
                    reported.contains(line),
                    "{}: line {line} changed but was not reported",
                    dir.display()
                );
            }
            assert_eq!(
                input.lines().count(),
                expected.lines().count(),
                "{}",
                dir.display()
            );
        }
    }
}
