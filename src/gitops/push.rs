//! Pushing one commit to one branch, without force, and reading the verdict.
//!
//! libgit2 reports a ref the server refused only through `push_update_reference`; `push`
//! itself returns `Ok`. So every push installs that callback and any status is a failure,
//! classified as a race (retry after re-fetching) or a permanent refusal (a hook, a protected
//! branch). What the server printed on the side band is kept, because a hook explains itself
//! there.

use std::cell::RefCell;

use git2::{Oid, PushOptions, Repository};

use super::GitopsError;
use super::repo::{AuthState, LocalClone, tracking_ref};

/// Why a push did not land.
#[derive(Debug)]
pub enum PushFailure {
    /// The branch moved under us (non-fast-forward, fetch first, lock contention): re-fetch,
    /// re-apply, retry.
    Race(String),
    /// Anything else; retrying will not help.
    Permanent(GitopsError),
}

/// Pushes `commit` to `refs/heads/<branch>` on the clone's remote, as a fast-forward only.
pub fn push(
    clone: &LocalClone,
    repo: &Repository,
    commit: Oid,
    branch: &str,
) -> Result<(), PushFailure> {
    let remote_def = clone.remote();
    let doing = format!("pushing {branch} to {}", remote_def.url.redacted());
    let dst = format!("refs/heads/{branch}");
    // libgit2 pushes from a ref, so stage the commit under a private one.
    let staging = format!("refs/deploybot/push/{branch}");
    repo.reference(&staging, commit, true, "deploybot: push")
        .map_err(|e| PushFailure::Permanent(GitopsError::git(&doing)(e)))?;

    let statuses: RefCell<Vec<(String, String)>> = RefCell::new(Vec::new());
    let sideband: RefCell<String> = RefCell::new(String::new());
    let auth = AuthState::default();
    let result = {
        let mut cb = auth.callbacks(remote_def);
        cb.push_update_reference(|reference, status| {
            if let Some(s) = status {
                statuses
                    .borrow_mut()
                    .push((reference.to_string(), s.to_string()));
            }
            Ok(())
        });
        cb.sideband_progress(|bytes| {
            sideband
                .borrow_mut()
                .push_str(&String::from_utf8_lossy(bytes));
            true
        });
        let mut remote = repo
            .remote_anonymous(remote_def.url.as_str())
            .map_err(|e| PushFailure::Permanent(GitopsError::git(&doing)(e)))?;
        let mut opts = PushOptions::new();
        opts.remote_callbacks(cb);
        remote.push(&[format!("{staging}:{dst}")], Some(&mut opts))
    };
    let _ = repo.find_reference(&staging).and_then(|mut r| r.delete());

    if let Err(e) = result {
        // libgit2 checks fast-forward itself against the refs it saw on connect.
        if e.code() == git2::ErrorCode::NotFastForward {
            return Err(PushFailure::Race(e.message().to_string()));
        }
        return Err(PushFailure::Permanent(auth.error(&doing, remote_def, e)));
    }
    if let Some((reference, status)) = statuses.into_inner().into_iter().next() {
        return Err(classify(
            branch,
            &reference,
            &status,
            &sideband.into_inner(),
        ));
    }
    // The remote now has it; keep the tracking ref in step so the next fetch is a no-op.
    repo.reference(&tracking_ref(branch), commit, true, "deploybot: pushed")
        .map_err(|e| PushFailure::Permanent(GitopsError::git(&doing)(e)))?;
    Ok(())
}

/// Sorts a refused ref into a race or a permanent refusal, from receive-pack's status text.
fn classify(branch: &str, reference: &str, status: &str, sideband: &str) -> PushFailure {
    let s = status.to_ascii_lowercase();
    if s.contains("hook declined") {
        return PushFailure::Permanent(GitopsError::HookRejected {
            branch: branch.to_string(),
            status: status.to_string(),
            message: remote_message(sideband),
        });
    }
    let race = [
        "non-fast-forward",
        "fetch first",
        "cannot lock ref",
        "failed to lock",
        "failed to update ref",
        "stale info",
        "incorrect old value",
    ];
    if race.iter().any(|r| s.contains(r)) {
        return PushFailure::Race(format!("{reference}: {status}"));
    }
    PushFailure::Permanent(GitopsError::PushRejected {
        branch: branch.to_string(),
        reference: reference.to_string(),
        status: status.to_string(),
    })
}

/// The remote's side-band text, one line per message, progress meters dropped.
fn remote_message(sideband: &str) -> String {
    let lines: Vec<&str> = sideband
        .split(['\n', '\r'])
        .map(|l| l.trim_start_matches("remote:").trim())
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("Resolving deltas") && !l.starts_with("Processing"))
        .collect();
    if lines.is_empty() {
        "(the hook printed nothing)".into()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_refusal_is_permanent_and_keeps_the_hook_message() {
        match classify(
            "main",
            "refs/heads/main",
            "pre-receive hook declined",
            "remote: policy: main is frozen\nremote: \n",
        ) {
            PushFailure::Permanent(e) => {
                let m = e.to_string();
                assert!(m.contains("policy: main is frozen"), "{m}");
                assert!(m.contains("hook"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lost_races_are_retryable() {
        for s in [
            "non-fast-forward",
            "fetch first",
            "cannot lock ref 'refs/heads/main'",
        ] {
            assert!(matches!(
                classify("main", "refs/heads/main", s, ""),
                PushFailure::Race(_)
            ));
        }
        assert!(matches!(
            classify("main", "refs/heads/main", "protected branch", ""),
            PushFailure::Permanent(GitopsError::PushRejected { .. })
        ));
    }
}
