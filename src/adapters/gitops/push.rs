//! Pushing one commit to one branch, without force, and reading the verdict.
//!
//! libgit2 reports a ref the server refused only through `push_update_reference`; `push`
//! itself returns `Ok`. So every push installs that callback and any status is a failure,
//! classified as a race (retry after re-fetching) or a permanent refusal (a hook, a protected
//! branch). What the server printed on the side band is kept, because a hook explains itself
//! there.
//!
//! `file://` remotes do not go through libgit2's local transport: it checks fast-forward
//! against the refs it listed on connect and then updates the remote ref *with force*, so two
//! processes can both pass the check and one silently overwrites the other. Instead the few new
//! objects are copied into the remote's object database and the branch is moved with a
//! compare-and-swap under git's ref lock (`reference_matching`). Hooks do not run for `file://`
//! (they never did with libgit2); servers (http, ssh) run them.

use std::cell::RefCell;

use git2::{Oid, PushOptions, Repository};

use crate::adapters::gitops::GitopsError;
use crate::adapters::gitops::repo::{AuthState, LocalClone, Transport, new_objects, tracking_ref};

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
/// `expected` is the remote tip the commit was built on (`None`: the branch must not exist yet).
pub fn push(
    clone: &LocalClone,
    repo: &Repository,
    commit: Oid,
    branch: &str,
    expected: Option<Oid>,
) -> Result<(), PushFailure> {
    if clone.remote().url.transport() == Transport::File {
        push_local(clone, repo, commit, branch, expected)?;
        repo.reference(&tracking_ref(branch), commit, true, "deploybot: pushed")
            .map_err(|e| {
                PushFailure::Permanent(GitopsError::git(format!("pushing {branch}"))(e))
            })?;
        return Ok(());
    }
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
        let deadline = std::time::Instant::now() + super::network_timeout();
        let sideband = &sideband;
        cb.sideband_progress(move |bytes| {
            sideband
                .borrow_mut()
                .push_str(&String::from_utf8_lossy(bytes));
            // The remote's progress messages are the one place a push can be cut short.
            std::time::Instant::now() < deadline
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

/// The `file://` push: copy the objects `commit` adds over `expected`, then compare-and-swap
/// the branch.
fn push_local(
    clone: &LocalClone,
    repo: &Repository,
    commit: Oid,
    branch: &str,
    expected: Option<Oid>,
) -> Result<(), PushFailure> {
    let url = clone.remote().url.as_str();
    let doing = format!("pushing {branch} to {url}");
    let perm = |e: git2::Error| PushFailure::Permanent(GitopsError::git(&doing)(e));
    let remote = clone.file_remote().map_err(PushFailure::Permanent)?;
    let c = repo.find_commit(commit).map_err(perm)?;
    // The parent came from the remote (the branch tip, or the base a new branch starts from),
    // so only what the commit adds over it needs copying.
    let base_tree = match c.parent(0) {
        Ok(p) => Some(p.tree().map_err(perm)?),
        Err(_) => None,
    };
    let mut objects = vec![commit];
    new_objects(
        repo,
        &c.tree().map_err(perm)?,
        base_tree.as_ref(),
        &mut objects,
    )
    .map_err(perm)?;
    let src = repo.odb().map_err(perm)?;
    let dst = remote.odb().map_err(perm)?;
    for oid in objects {
        if !dst.exists(oid) {
            let obj = src.read(oid).map_err(perm)?;
            dst.write(obj.kind(), obj.data()).map_err(perm)?;
        }
    }
    let dst_ref = format!("refs/heads/{branch}");
    let updated = match expected {
        Some(old) => remote.reference_matching(&dst_ref, commit, true, old, "deploybot: push"),
        None => remote.reference(&dst_ref, commit, false, "deploybot: push"),
    };
    match updated {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.code(),
                git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked
            ) || e.class() == git2::ErrorClass::Reference =>
        {
            Err(PushFailure::Race(format!("{dst_ref}: {}", e.message())))
        }
        Err(e) => Err(perm(e)),
    }
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
