//! Who drives a rollout when several replicas share one store: a lease per rollout, held by one
//! replica until it expires, with a fencing token that grows by one at every change of holder.
//! The decisions are here, over plain data; the store keeps the lease and refuses every write of
//! the rollout's record by a token that is no longer the current one, so a replica that was
//! paused or partitioned past its lease cannot write after another took over.
//!
//! Time is Unix milliseconds from the caller's clock: replicas must agree on the time to well
//! within a lease (NTP does), since each judges expiry by its own.

/// A rollout's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub deploy_id: String,
    /// The replica that holds it.
    pub holder: String,
    /// The fencing token: 1 for the first holder, one more at every change of holder.
    pub fence: i64,
    /// Unix milliseconds; from then on another replica may take it.
    pub expires_at: i64,
}

/// What asking for a rollout's lease comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds it, or its holder's lease ran out: take it with this token.
    Take { fence: i64 },
    /// The asker holds it already, with this token: extend it.
    Renew { fence: i64 },
    /// Another replica holds it until `until`.
    Held { holder: String, until: i64 },
}

/// What the store answered a replica that asked for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Taken or renewed: act with this token until `expires_at`.
    Granted(Lease),
    /// Another replica holds it until `until`.
    Held { holder: String, until: i64 },
}

/// What `me` gets when it asks for a lease that is `current` (none yet: `None`) at `now`.
pub fn claim(current: Option<&Lease>, me: &str, now: i64) -> Claim {
    match current {
        None => Claim::Take { fence: 1 },
        Some(l) if l.holder == me => Claim::Renew { fence: l.fence },
        Some(l) if l.expires_at <= now => Claim::Take { fence: l.fence + 1 },
        Some(l) => Claim::Held {
            holder: l.holder.clone(),
            until: l.expires_at,
        },
    }
}

/// Whether the holder of `mine` may still act on the rollout: only while its token is the
/// current one. An expired lease nobody took over still is (nobody else can have written); one
/// that another replica took is not, even if that replica's lease expired in turn.
pub fn still_holds(current: Option<&Lease>, mine: &Lease) -> bool {
    current.is_some_and(|l| l.fence == mine.fence && l.holder == mine.holder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, fence: i64, expires_at: i64) -> Lease {
        Lease {
            deploy_id: "d-1".into(),
            holder: holder.into(),
            fence,
            expires_at,
        }
    }

    #[test]
    fn the_first_asker_takes_token_one_and_renews_it() {
        assert_eq!(claim(None, "a", 0), Claim::Take { fence: 1 });
        assert_eq!(
            claim(Some(&lease("a", 1, 100)), "a", 50),
            Claim::Renew { fence: 1 }
        );
        // Expired but not taken over: the holder renews with the same token.
        assert_eq!(
            claim(Some(&lease("a", 1, 100)), "a", 500),
            Claim::Renew { fence: 1 }
        );
    }

    #[test]
    fn another_replica_waits_for_expiry_then_takes_the_next_token() {
        let held = lease("a", 3, 100);
        assert_eq!(
            claim(Some(&held), "b", 99),
            Claim::Held {
                holder: "a".into(),
                until: 100
            }
        );
        assert_eq!(claim(Some(&held), "b", 100), Claim::Take { fence: 4 });
    }

    #[test]
    fn a_replica_that_was_taken_over_no_longer_holds() {
        let mine = lease("a", 1, 100);
        assert!(still_holds(Some(&mine), &mine));
        assert!(still_holds(Some(&lease("a", 1, 900)), &mine), "renewed");
        assert!(!still_holds(Some(&lease("b", 2, 900)), &mine));
        // b's lease expired too: a's old token is still not the current one.
        assert!(!still_holds(Some(&lease("b", 2, 0)), &mine));
        assert!(!still_holds(None, &mine));
    }
}
