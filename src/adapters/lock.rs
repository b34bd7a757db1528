//! Per-rollout locks: one task at a time drives a rollout, whoever feeds it (the webhook worker,
//! the tick loop, the reconcile, `deploybot rollout` in another process). Within the process an
//! async mutex per rollout queues the tasks in arrival order; across processes an advisory lock
//! on a file per rollout (`flock`, released by the kernel when the holder exits or is killed)
//! does, when the locks are given a directory.
//!
//! Lock files are small and kept (deleting one while another process has it open would let two
//! holders in); their names are a hash of the deploy id, so any id makes a valid name.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

/// The locks of a process's rollouts; clones share them.
#[derive(Debug, Clone, Default)]
pub struct RolloutLocks {
    /// Where the lock files are; `None`: this process only.
    dir: Option<PathBuf>,
    held: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A rollout locked: released when dropped (a task aborted mid-effect releases it too).
#[derive(Debug)]
pub struct RolloutGuard {
    _task: OwnedMutexGuard<()>,
    _file: Option<File>,
}

/// Why a lock could not be taken (its file could not be made or locked).
#[derive(Debug, thiserror::Error)]
#[error("locking rollout {id} ({path}): {cause}")]
pub struct LockError {
    pub id: String,
    pub path: String,
    pub cause: String,
}

impl RolloutLocks {
    /// Locks of this process only.
    pub fn in_process() -> RolloutLocks {
        RolloutLocks::default()
    }

    /// Locks shared with every process that uses the same `dir` (created when missing).
    pub fn in_dir(dir: PathBuf) -> RolloutLocks {
        RolloutLocks {
            dir: Some(dir),
            ..RolloutLocks::default()
        }
    }

    /// Waits until no other task (in any process sharing the directory) drives rollout `id`,
    /// then holds it until the guard is dropped.
    pub async fn lock(&self, id: &str) -> Result<RolloutGuard, LockError> {
        let mutex = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            // Entries nobody holds or waits for are dropped, so the map stays as small as the
            // number of rollouts being driven.
            held.retain(|_, m| Arc::strong_count(m) > 1);
            held.entry(id.to_string()).or_default().clone()
        };
        let task = mutex.lock_owned().await;
        let file = match &self.dir {
            Some(dir) => Some(lock_file(dir, id).await?),
            None => None,
        };
        Ok(RolloutGuard {
            _task: task,
            _file: file,
        })
    }
}

/// Opens and locks the lock file of `id` under `dir`, waiting on a blocking thread (the lock
/// itself blocks) while another process holds it.
async fn lock_file(dir: &std::path::Path, id: &str) -> Result<File, LockError> {
    let path = dir.join(format!(
        "{}.lock",
        hex::encode(Sha256::digest(id.as_bytes()))
    ));
    let error = |cause: String| LockError {
        id: id.to_string(),
        path: path.display().to_string(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(|e| error(format!("creating the directory: {e}")))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| error(format!("opening: {e}")))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| error(format!("waiting for the lock: {e}")))?
        .map_err(|e| error(format!("locking: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two lock sets over one directory behave as two processes: the second waits for the
    /// first to let go, and an id held by nobody is free at once.
    #[tokio::test]
    async fn a_rollout_is_held_by_one_holder_across_lock_sets_sharing_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let one = RolloutLocks::in_dir(dir.path().join("locks"));
        let other = RolloutLocks::in_dir(dir.path().join("locks"));
        let held = one.lock("checkout-production-1.0.0").await.unwrap();
        let waiting = other.lock("checkout-production-1.0.0");
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "the other holder waits"
        );
        other.lock("checkout-staging-1.0.0").await.unwrap();
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("free once dropped")
            .unwrap();
    }

    #[tokio::test]
    async fn in_process_locks_queue_tasks_and_forget_idle_rollouts() {
        let locks = RolloutLocks::in_process();
        let first = locks.lock("a").await.unwrap();
        let second = locks.lock("a");
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err()
        );
        drop(first);
        drop(second.await.unwrap());
        locks.lock("b").await.unwrap();
        assert!(
            locks.held.lock().unwrap().len() <= 1,
            "idle entries are dropped"
        );
    }
}
