//! A unified-diff parser for what `git diff`, `git show`, `git log -p` and `diff -u` print, and for
//! the per-file `patch` GitHub returns (hunks only).
//!
//! It reads structure (files, status, hunks, line counts, commit headers) and never interprets the
//! content: a diff is untrusted text. Hunks are delimited by their header counts, so a removed line
//! that reads `-- x` or `+++ y` is content, not a new file header. A diff that stops inside a hunk
//! marks that file `patch_truncated` (unknown content is riskier), rather than failing.

use super::change::{Change, ChangedFile, FileStatus, Hunk};

/// A diff that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    #[error("the input contains no file changes (expected `git diff`/`git show` output)")]
    Empty,
    #[error("line {line}: malformed hunk header {text:?}")]
    BadHunkHeader { line: usize, text: String },
    #[error("line {line}: a hunk line outside any file ({text:?})")]
    HunkOutsideFile { line: usize, text: String },
}

/// One commit header found in `git show` / `git log -p` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitHeader {
    pub sha: String,
    pub author: Option<String>,
    pub message: String,
}

/// The parsed diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedDiff {
    pub files: Vec<ChangedFile>,
    pub commits: Vec<CommitHeader>,
}

impl ParsedDiff {
    /// The change a diff describes: title and author from the first commit header, if any.
    pub fn into_change(self) -> Change {
        let title = self
            .commits
            .first()
            .and_then(|c| c.message.lines().next())
            .unwrap_or_default()
            .to_string();
        let body = self
            .commits
            .first()
            .map(|c| {
                c.message
                    .split_once('\n')
                    .map(|x| x.1.trim())
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        let author = self.commits.first().and_then(|c| c.author.clone());
        let commit_messages = self.commits.into_iter().map(|c| c.message).collect();
        Change {
            files: self.files,
            title,
            body,
            commit_messages,
            author,
            labels: Vec::new(),
            truncated_patches: 0,
        }
        .with_unlisted_files(0)
    }
}

/// Parses a whole diff.
pub fn parse_unified_diff(text: &str) -> Result<ParsedDiff, DiffError> {
    let mut out = ParsedDiff::default();
    let mut file: Option<ChangedFile> = None;
    let mut hunk: Option<OpenHunk> = None;
    let mut in_commit_header = false;
    let mut in_binary_patch = false;

    fn close_file(
        out: &mut ParsedDiff,
        file: &mut Option<ChangedFile>,
        hunk: &mut Option<OpenHunk>,
    ) {
        if let Some(mut f) = file.take() {
            if let Some(h) = hunk.take() {
                // The diff moved on while this hunk still expected lines.
                f.patch_truncated |= !h.complete();
                f.hunks.push(h.hunk);
            }
            f.additions = f.hunks.iter().map(|h| h.additions).sum();
            f.deletions = f.hunks.iter().map(|h| h.deletions).sum();
            out.files.push(f);
        }
    }

    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((idx, raw)) = lines.next() {
        let lineno = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.is_empty() && lines.peek().is_none() {
            break; // the final newline
        }

        if let Some(h) = hunk.as_mut() {
            if !h.complete() {
                match raw.as_bytes().first() {
                    Some(b'+') => {
                        h.push_new(raw);
                        continue;
                    }
                    Some(b'-') => {
                        h.push_old(raw);
                        continue;
                    }
                    Some(b' ') => {
                        h.push_context(raw);
                        continue;
                    }
                    // Some tools strip the space of an empty context line.
                    None => {
                        h.push_context(" ");
                        continue;
                    }
                    Some(b'\\') => continue, // "\ No newline at end of file"
                    _ => {}                  // the hunk ended early: fall through and read a header
                }
            }
            if line.starts_with('\\') {
                continue;
            }
            let h = hunk.take().expect("checked above");
            let f = file.as_mut().expect("a hunk always belongs to a file");
            f.patch_truncated |= !h.complete();
            f.hunks.push(h.hunk);
        }

        if in_binary_patch {
            if line.starts_with("diff --git ") {
                in_binary_patch = false;
            } else {
                continue;
            }
        }

        if let Some(rest) = line.strip_prefix("diff --git ") {
            close_file(&mut out, &mut file, &mut hunk);
            in_commit_header = false;
            let (a, b) = split_git_header_paths(rest);
            let mut f = ChangedFile::new(b.clone(), FileStatus::Modified);
            if a != b {
                f.previous_path = Some(a);
            }
            file = Some(f);
            continue;
        }
        if let Some(sha) = commit_line(line) {
            close_file(&mut out, &mut file, &mut hunk);
            out.commits.push(CommitHeader {
                sha,
                ..CommitHeader::default()
            });
            in_commit_header = true;
            continue;
        }
        if in_commit_header {
            let c = out.commits.last_mut().expect("header started");
            if let Some(a) = line.strip_prefix("Author:") {
                c.author = Some(author_name(a.trim()));
            } else if let Some(m) = line.strip_prefix("    ") {
                c.message.push_str(m);
                c.message.push('\n');
            } else if line.is_empty() && !c.message.is_empty() {
                c.message.push('\n');
            } else if line.starts_with("---")
                && lines.peek().is_some_and(|(_, n)| n.starts_with("+++ "))
            {
                // `diff -u` style file after a commit header (no `diff --git` line).
                in_commit_header = false;
                file = Some(ChangedFile::new(
                    strip_side(&line[3..]),
                    FileStatus::Modified,
                ));
                continue;
            }
            continue;
        }

        if line.starts_with("@@") {
            if file.is_none() {
                return Err(DiffError::HunkOutsideFile {
                    line: lineno,
                    text: line.to_string(),
                });
            }
            hunk = Some(OpenHunk::parse(line, lineno)?);
            continue;
        }
        if let Some(rest) = line.strip_prefix("--- ") {
            if file.as_ref().is_none_or(|f| !f.hunks.is_empty())
                && lines.peek().is_some_and(|(_, n)| n.starts_with("+++ "))
            {
                // A plain `diff -u` file with no `diff --git` line.
                close_file(&mut out, &mut file, &mut hunk);
                file = Some(ChangedFile::new(strip_side(rest), FileStatus::Modified));
            }
            if let Some(f) = file.as_mut()
                && rest.trim() == "/dev/null"
            {
                f.status = FileStatus::Added;
            }
            continue;
        }
        let Some(f) = file.as_mut() else {
            continue; // preamble: format-patch headers, stat lines, signatures
        };
        if let Some(rest) = line.strip_prefix("+++ ") {
            if rest.trim() == "/dev/null" {
                f.status = FileStatus::Removed;
            } else {
                f.path = strip_side(rest);
            }
        } else if line.starts_with("new file mode") {
            f.status = FileStatus::Added;
        } else if line.starts_with("deleted file mode") {
            f.status = FileStatus::Removed;
        } else if let Some(p) = line.strip_prefix("rename from ") {
            f.status = FileStatus::Renamed;
            f.previous_path = Some(unquote(p));
        } else if let Some(p) = line.strip_prefix("rename to ") {
            f.status = FileStatus::Renamed;
            f.path = unquote(p);
        } else if let Some(p) = line.strip_prefix("copy from ") {
            f.status = FileStatus::Copied;
            f.previous_path = Some(unquote(p));
        } else if let Some(p) = line.strip_prefix("copy to ") {
            f.status = FileStatus::Copied;
            f.path = unquote(p);
        } else if line.starts_with("new mode") && f.status == FileStatus::Modified {
            f.status = FileStatus::Changed;
        } else if line.starts_with("Binary files ") {
            f.binary = true;
        } else if line.starts_with("GIT binary patch") {
            f.binary = true;
            in_binary_patch = true;
        }
    }
    close_file(&mut out, &mut file, &mut hunk);
    for c in &mut out.commits {
        c.message = c.message.trim().to_string();
    }
    for f in &mut out.files {
        if f.previous_path.as_deref() == Some(f.path.as_str()) {
            f.previous_path = None;
        }
        if f.status == FileStatus::Modified && f.previous_path.is_some() {
            f.status = FileStatus::Renamed;
        }
    }
    if out.files.is_empty() {
        return Err(DiffError::Empty);
    }
    Ok(out)
}

/// Parses the hunks of one file's patch, as GitHub's PR files API returns it.
pub fn parse_patch_hunks(patch: &str) -> Result<(Vec<Hunk>, bool), DiffError> {
    let mut text = String::from("diff --git a/f b/f\n");
    text.push_str(patch);
    let parsed = parse_unified_diff(&text)?;
    let f = parsed.files.into_iter().next().ok_or(DiffError::Empty)?;
    Ok((f.hunks, f.patch_truncated))
}

struct OpenHunk {
    hunk: Hunk,
    old_left: u32,
    new_left: u32,
}

impl OpenHunk {
    fn parse(line: &str, lineno: usize) -> Result<OpenHunk, DiffError> {
        let bad = || DiffError::BadHunkHeader {
            line: lineno,
            text: line.chars().take(120).collect(),
        };
        let rest = line.strip_prefix("@@ ").ok_or_else(bad)?;
        let end = rest.find(" @@").ok_or_else(bad)?;
        let mut ranges = rest[..end].split(' ');
        let old = ranges
            .next()
            .and_then(|r| r.strip_prefix('-'))
            .ok_or_else(bad)?;
        let new = ranges
            .next()
            .and_then(|r| r.strip_prefix('+'))
            .ok_or_else(bad)?;
        if ranges.next().is_some() {
            return Err(bad()); // combined diffs (@@@) are not unified diffs
        }
        let range = |r: &str| -> Option<(u32, u32)> {
            match r.split_once(',') {
                Some((s, n)) => Some((s.parse().ok()?, n.parse().ok()?)),
                None => Some((r.parse().ok()?, 1)),
            }
        };
        let (old_start, old_len) = range(old).ok_or_else(bad)?;
        let (new_start, new_len) = range(new).ok_or_else(bad)?;
        Ok(OpenHunk {
            hunk: Hunk {
                header: line.to_string(),
                old_start,
                new_start,
                lines: Vec::new(),
                additions: 0,
                deletions: 0,
            },
            old_left: old_len,
            new_left: new_len,
        })
    }

    fn complete(&self) -> bool {
        self.old_left == 0 && self.new_left == 0
    }

    fn push_new(&mut self, raw: &str) {
        self.hunk.lines.push(raw.to_string());
        self.hunk.additions += 1;
        self.new_left = self.new_left.saturating_sub(1);
    }

    fn push_old(&mut self, raw: &str) {
        self.hunk.lines.push(raw.to_string());
        self.hunk.deletions += 1;
        self.old_left = self.old_left.saturating_sub(1);
    }

    fn push_context(&mut self, raw: &str) {
        self.hunk.lines.push(raw.to_string());
        self.old_left = self.old_left.saturating_sub(1);
        self.new_left = self.new_left.saturating_sub(1);
    }
}

/// `commit <40 hex>` (possibly followed by decorations) starts a commit header.
fn commit_line(line: &str) -> Option<String> {
    let rest = line.strip_prefix("commit ")?;
    let sha = rest.split_whitespace().next()?;
    (sha.len() >= 7 && sha.len() <= 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| sha.to_string())
}

/// `Name <email>` -> `Name`: the e-mail address is not needed to judge risk.
fn author_name(a: &str) -> String {
    a.split_once(" <").map_or(a, |(n, _)| n).trim().to_string()
}

/// Splits `a/x b/y` (or quoted forms). With spaces in names the split is ambiguous; the halves
/// are equal for anything but a rename, and renames carry `rename from/to` lines that win.
fn split_git_header_paths(rest: &str) -> (String, String) {
    if let Some(quoted) = rest.strip_prefix('"')
        && let Some(end) = quoted.find("\" ")
    {
        let a = &rest[..end + 2];
        let b = &rest[end + 3..];
        return (strip_side(a), strip_side(b));
    }
    let n = rest.len();
    // Prefer the split where both halves name the same file.
    if n % 2 == 1 {
        let (a, b) = (&rest[..n / 2], &rest[n / 2 + 1..]);
        if a.get(2..) == b.get(2..) {
            return (strip_side(a), strip_side(b));
        }
    }
    match rest.find(" b/") {
        Some(i) => (strip_side(&rest[..i]), strip_side(&rest[i + 1..])),
        None => match rest.split_once(' ') {
            Some((a, b)) => (strip_side(a), strip_side(b)),
            None => (strip_side(rest), strip_side(rest)),
        },
    }
}

/// Removes quoting, a trailing tab-separated timestamp (`diff -u`) and the `a/` / `b/` prefix.
fn strip_side(p: &str) -> String {
    let p = p.trim_end();
    let p = p.split('\t').next().unwrap_or(p);
    let p = unquote(p);
    p.strip_prefix("a/")
        .or_else(|| p.strip_prefix("b/"))
        .unwrap_or(&p)
        .to_string()
}

/// Git C-quotes paths with special characters: `"a/caf\303\251.txt"`.
fn unquote(p: &str) -> String {
    let p = p.trim();
    let Some(inner) = p.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return p.to_string();
    };
    let mut bytes = Vec::with_capacity(inner.len());
    let mut it = inner.bytes().peekable();
    while let Some(b) = it.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        match it.next() {
            Some(b'n') => bytes.push(b'\n'),
            Some(b't') => bytes.push(b'\t'),
            Some(d @ b'0'..=b'7') => {
                let mut v = u32::from(d - b'0');
                for _ in 0..2 {
                    if let Some(&n @ b'0'..=b'7') = it.peek() {
                        v = v * 8 + u32::from(n - b'0');
                        it.next();
                    }
                }
                bytes.push(v as u8);
            }
            Some(other) => bytes.push(other),
            None => bytes.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_show_output_yields_commit_and_files() {
        let text = r#"commit 0123456789abcdef0123456789abcdef01234567
Author: Ada Lovelace <ada@example.com>
Date:   Mon Jan 1 00:00:00 2024 +0000

    Add orders table

    Needed for checkout.

diff --git a/db/migrate/001_orders.sql b/db/migrate/001_orders.sql
new file mode 100644
index 0000000..e69de29
--- /dev/null
+++ b/db/migrate/001_orders.sql
@@ -0,0 +1,2 @@
+CREATE TABLE orders (id int);
+-- a comment that looks like a header
diff --git a/src/app.rs b/src/app.rs
index 1111111..2222222 100644
--- a/src/app.rs
+++ b/src/app.rs
@@ -1,3 +1,3 @@ fn main()
 a
--- old line that looks like a header
+++ new line that looks like a header
 c
"#;
        let d = parse_unified_diff(text).unwrap();
        assert_eq!(d.commits.len(), 1);
        assert_eq!(d.commits[0].author.as_deref(), Some("Ada Lovelace"));
        assert_eq!(
            d.commits[0].message,
            "Add orders table\n\nNeeded for checkout."
        );
        assert_eq!(d.files.len(), 2);
        let m = &d.files[0];
        assert_eq!(m.path, "db/migrate/001_orders.sql");
        assert_eq!(m.status, FileStatus::Added);
        assert_eq!((m.additions, m.deletions), (2, 0));
        let a = &d.files[1];
        assert_eq!(a.path, "src/app.rs");
        assert_eq!(a.status, FileStatus::Modified);
        assert_eq!((a.additions, a.deletions), (1, 1));
        assert!(!a.patch_truncated);
        let c = d.into_change();
        assert_eq!(c.title, "Add orders table");
        assert_eq!(c.body, "Needed for checkout.");
    }

    #[test]
    fn renames_deletes_binaries_and_mode_changes() {
        let text = "diff --git a/old name.txt b/new name.txt\n\
similarity index 90%\n\
rename from old name.txt\n\
rename to new name.txt\n\
diff --git a/gone.rs b/gone.rs\n\
deleted file mode 100644\n\
--- a/gone.rs\n\
+++ /dev/null\n\
@@ -1,2 +0,0 @@\n\
-fn a() {}\n\
-fn b() {}\n\
diff --git a/logo.png b/logo.png\n\
index 1..2 100644\n\
Binary files a/logo.png and b/logo.png differ\n\
diff --git a/run.sh b/run.sh\n\
old mode 100644\n\
new mode 100755\n\
diff --git \"a/caf\\303\\251.md\" \"b/caf\\303\\251.md\"\n\
--- \"a/caf\\303\\251.md\"\n\
+++ \"b/caf\\303\\251.md\"\n\
@@ -1 +1 @@\n\
-x\n\
+y\n";
        let d = parse_unified_diff(text).unwrap();
        let by = |p: &str| {
            d.files
                .iter()
                .find(|f| f.path == p)
                .unwrap_or_else(|| panic!("{p}: {d:?}"))
        };
        let r = by("new name.txt");
        assert_eq!(r.status, FileStatus::Renamed);
        assert_eq!(r.previous_path.as_deref(), Some("old name.txt"));
        assert_eq!(by("gone.rs").status, FileStatus::Removed);
        assert_eq!(by("gone.rs").deletions, 2);
        assert!(by("logo.png").binary);
        assert_eq!(by("run.sh").status, FileStatus::Changed);
        assert_eq!(by("café.md").additions, 1);
    }

    #[test]
    fn a_diff_cut_inside_a_hunk_marks_the_file_truncated() {
        let text = "diff --git a/a.rs b/a.rs\n--- a/a.rs\n+++ b/a.rs\n@@ -1,10 +1,10 @@\n-x\n+y\n";
        let d = parse_unified_diff(text).unwrap();
        assert!(d.files[0].patch_truncated);
        assert_eq!(d.into_change().truncated_patches, 1);
    }

    #[test]
    fn plain_diff_u_output_is_understood() {
        let text = "--- a.txt\t2024-01-01 00:00:00\n+++ b.txt\t2024-01-01 00:00:01\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n--- c.txt\n+++ c.txt\n@@ -1 +1 @@\n-1\n+2\n";
        let d = parse_unified_diff(text).unwrap();
        assert_eq!(d.files.len(), 2, "{d:?}");
        assert_eq!(d.files[0].path, "b.txt");
        assert_eq!(d.files[1].path, "c.txt");
    }

    #[test]
    fn crlf_and_missing_newline_marker() {
        let text = "diff --git a/w.txt b/w.txt\r\n--- a/w.txt\r\n+++ b/w.txt\r\n@@ -1 +1 @@\r\n-a\r\n\\ No newline at end of file\r\n+b\r\n\\ No newline at end of file\r\n";
        let d = parse_unified_diff(text).unwrap();
        assert_eq!(d.files[0].path, "w.txt");
        assert_eq!((d.files[0].additions, d.files[0].deletions), (1, 1));
        assert!(!d.files[0].patch_truncated);
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        assert_eq!(parse_unified_diff(""), Err(DiffError::Empty));
        assert_eq!(parse_unified_diff("hello\nworld\n"), Err(DiffError::Empty));
        let e = parse_unified_diff("diff --git a/x b/x\n@@ -1,x +1 @@\n").unwrap_err();
        assert!(matches!(e, DiffError::BadHunkHeader { line: 2, .. }), "{e}");
        let e = parse_unified_diff("@@ -1 +1 @@\n-a\n+b\n").unwrap_err();
        assert!(
            matches!(e, DiffError::HunkOutsideFile { line: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn github_patch_hunks() {
        let (h, truncated) = parse_patch_hunks("@@ -1,2 +1,3 @@\n a\n+b\n c").unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].additions, 1);
        assert!(!truncated);
    }
}
