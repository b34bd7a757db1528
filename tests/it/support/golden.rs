//! Golden files, through one helper and one environment variable: a golden file pins a text
//! deploybot writes, so a change to it shows up as a diff to review. `UPDATE_GOLDEN=1` rewrites
//! the files instead of comparing them (`UPDATE_GOLDEN=1 cargo test --test it`, then read
//! `git diff fixtures/`).

use std::path::Path;

/// The one variable that turns comparing into rewriting.
pub const UPDATE: &str = "UPDATE_GOLDEN";

/// Whether this run rewrites golden files instead of comparing them.
pub fn updating() -> bool {
    std::env::var_os(UPDATE).is_some()
}

/// Compares `actual` with the file at `path` (or, when [`updating`], writes it there); the error
/// names the file and shows the difference.
pub fn compare(path: &Path, actual: &str) -> Result<(), String> {
    if updating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        return std::fs::write(path, actual).map_err(|e| format!("{}: {e}", path.display()));
    }
    let expected = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e} ({UPDATE}=1 creates it)\n{actual}", path.display()))?;
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "{} differs ({UPDATE}=1 to accept):\n{}",
        path.display(),
        similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("expected", "actual")
    ))
}

/// Checks `actual` against `fixtures/<name>`, panicking with the difference.
pub fn check(name: &str, actual: &str) {
    if let Err(e) = compare(&super::fixtures_dir().join(name), actual) {
        panic!("golden {name}: {e}");
    }
}
