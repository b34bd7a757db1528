//! The input of a risk assessment: what a change touches (files, their status, line counts and
//! hunks) and what its author said about it (title, body, commit messages, labels).
//!
//! Plain data only: it is built by the diff parser (`risk::diff`) or from the GitHub port, and it
//! never fetches anything itself.

use serde::{Deserialize, Serialize};

/// How a file changed, in GitHub's vocabulary (the PR files API `status` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Added,
    Modified,
    Removed,
    Renamed,
    Copied,
    /// Only the mode (or type) changed.
    Changed,
    Unchanged,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Added => "added",
            FileStatus::Modified => "modified",
            FileStatus::Removed => "removed",
            FileStatus::Renamed => "renamed",
            FileStatus::Copied => "copied",
            FileStatus::Changed => "changed",
            FileStatus::Unchanged => "unchanged",
        }
    }

    /// Parses GitHub's `status` string; an unknown word is `Modified` because the file did change.
    pub fn from_github(s: &str) -> FileStatus {
        match s {
            "added" => FileStatus::Added,
            "removed" => FileStatus::Removed,
            "renamed" => FileStatus::Renamed,
            "copied" => FileStatus::Copied,
            "changed" => FileStatus::Changed,
            "unchanged" => FileStatus::Unchanged,
            _ => FileStatus::Modified,
        }
    }
}

/// One `@@ -a,b +c,d @@` hunk. `lines` keep their `+`, `-` or ` ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hunk {
    /// The `@@ ... @@ context` header line as written.
    pub header: String,
    pub old_start: u32,
    pub new_start: u32,
    pub lines: Vec<String>,
    pub additions: u32,
    pub deletions: u32,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    pub path: String,
    /// The old path of a rename or copy.
    pub previous_path: Option<String>,
    pub status: FileStatus,
    pub additions: u32,
    pub deletions: u32,
    /// Binary content: no lines to read.
    pub binary: bool,
    /// The content is not fully visible: GitHub left the patch out (huge file) or the diff ended
    /// inside a hunk. Unknown content is scored as risky, never as harmless.
    pub patch_truncated: bool,
    pub hunks: Vec<Hunk>,
}

impl ChangedFile {
    /// A file with no hunks yet, for builders.
    pub fn new(path: impl Into<String>, status: FileStatus) -> ChangedFile {
        ChangedFile {
            path: path.into(),
            previous_path: None,
            status,
            additions: 0,
            deletions: 0,
            binary: false,
            patch_truncated: false,
            hunks: Vec::new(),
        }
    }

    pub fn lines_changed(&self) -> u32 {
        self.additions.saturating_add(self.deletions)
    }
}

/// Everything the policy and the model look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub files: Vec<ChangedFile>,
    pub title: String,
    pub body: String,
    pub commit_messages: Vec<String>,
    pub author: Option<String>,
    pub labels: Vec<String>,
    /// Files whose content could not be seen: those flagged `patch_truncated` plus files the
    /// source did not list at all (GitHub lists at most 3000 files of a pull request).
    pub truncated_patches: usize,
}

impl Change {
    pub fn additions(&self) -> u64 {
        self.files.iter().map(|f| u64::from(f.additions)).sum()
    }

    pub fn deletions(&self) -> u64 {
        self.files.iter().map(|f| u64::from(f.deletions)).sum()
    }

    /// Recounts `truncated_patches` from the file flags, keeping any files known to be unlisted.
    pub fn with_unlisted_files(mut self, unlisted: usize) -> Change {
        self.truncated_patches = self.files.iter().filter(|f| f.patch_truncated).count() + unlisted;
        self
    }
}
