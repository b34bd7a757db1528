//! Counting approvals on a gated step's PR: which reviews count, and whether enough do.
//!
//! The rules (issue 6): a review counts when it is the reviewer's latest decisive review, is in
//! state approved, was given on the PR's current head commit, by someone allowed to approve
//! (write access or a configured team, resolved by the caller through the GitHub API), and not
//! by the author of the change. A standing "changes requested" from an allowed reviewer blocks.
//! Pure: the caller fetches reviews and permissions; this decides.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A review's state, as GitHub reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
    Dismissed,
    Pending,
}

/// One review on the approval PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub reviewer: String,
    pub state: ReviewState,
    /// The commit the review was given on.
    pub commit_sha: String,
    pub submitted_at: DateTime<Utc>,
}

/// Where the approval stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Enough approvals: these reviewers approved.
    Approved { by: Vec<String> },
    /// Not yet: `have` of `need`; `ignored` says which reviews did not count and why.
    Waiting {
        have: usize,
        need: usize,
        ignored: Vec<(String, String)>,
    },
    /// An allowed reviewer's latest decisive review requests changes.
    Blocked { by: String },
}

/// Decides whether `reviews` approve a PR at `head_sha` for a change by `author`.
pub fn count_approvals(
    reviews: &[Review],
    head_sha: &str,
    author: &str,
    may_approve: impl Fn(&str) -> bool,
    required: usize,
) -> ApprovalOutcome {
    // The latest decisive review per reviewer; a later comment does not undo an approval.
    let mut latest: BTreeMap<String, &Review> = BTreeMap::new();
    let mut sorted: Vec<&Review> = reviews.iter().collect();
    sorted.sort_by_key(|r| r.submitted_at);
    for r in sorted {
        if matches!(
            r.state,
            ReviewState::Approved | ReviewState::ChangesRequested | ReviewState::Dismissed
        ) {
            latest.insert(r.reviewer.to_ascii_lowercase(), r);
        }
    }
    let mut approvers = Vec::new();
    let mut ignored = Vec::new();
    for r in latest.values() {
        let why = if r.reviewer.eq_ignore_ascii_case(author) {
            Some("is the author of the change")
        } else if !may_approve(&r.reviewer) {
            Some("has no write access and is in no approving team")
        } else {
            None
        };
        if let Some(why) = why {
            ignored.push((r.reviewer.clone(), why.to_string()));
            continue;
        }
        match r.state {
            ReviewState::ChangesRequested => {
                return ApprovalOutcome::Blocked {
                    by: r.reviewer.clone(),
                };
            }
            ReviewState::Approved if r.commit_sha == head_sha => approvers.push(r.reviewer.clone()),
            ReviewState::Approved => ignored.push((
                r.reviewer.clone(),
                format!("approved {}, not the current head {head_sha}", r.commit_sha),
            )),
            _ => {}
        }
    }
    if approvers.len() >= required.max(1) {
        ApprovalOutcome::Approved { by: approvers }
    } else {
        ApprovalOutcome::Waiting {
            have: approvers.len(),
            need: required.max(1),
            ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReviewState::*;

    fn review(who: &str, state: ReviewState, sha: &str, at: i64) -> Review {
        Review {
            reviewer: who.into(),
            state,
            commit_sha: sha.into(),
            submitted_at: DateTime::from_timestamp(1_800_000_000 + at, 0).unwrap(),
        }
    }

    fn writers(login: &str) -> bool {
        matches!(login, "alice" | "bob" | "carol")
    }

    #[test]
    fn only_current_head_approvals_by_writers_other_than_the_author_count() {
        let cases: &[(&str, Vec<Review>, usize, ApprovalOutcome)] = &[
            (
                "a writer approves the head",
                vec![review("bob", Approved, "h2", 1)],
                1,
                ApprovalOutcome::Approved {
                    by: vec!["bob".into()],
                },
            ),
            (
                "the author's own approval never counts",
                vec![review("alice", Approved, "h2", 1)],
                1,
                ApprovalOutcome::Waiting {
                    have: 0,
                    need: 1,
                    ignored: vec![("alice".into(), "is the author of the change".into())],
                },
            ),
            (
                "a reader's approval does not count",
                vec![review("mallory", Approved, "h2", 1)],
                1,
                ApprovalOutcome::Waiting {
                    have: 0,
                    need: 1,
                    ignored: vec![(
                        "mallory".into(),
                        "has no write access and is in no approving team".into(),
                    )],
                },
            ),
            (
                "an approval of an older head is stale",
                vec![review("bob", Approved, "h1", 1)],
                1,
                ApprovalOutcome::Waiting {
                    have: 0,
                    need: 1,
                    ignored: vec![("bob".into(), "approved h1, not the current head h2".into())],
                },
            ),
            (
                "a later comment does not undo an approval",
                vec![
                    review("bob", Approved, "h2", 1),
                    review("bob", Commented, "h2", 2),
                ],
                1,
                ApprovalOutcome::Approved {
                    by: vec!["bob".into()],
                },
            ),
            (
                "a later dismissal does",
                vec![
                    review("bob", Approved, "h2", 1),
                    review("bob", Dismissed, "h2", 2),
                ],
                1,
                ApprovalOutcome::Waiting {
                    have: 0,
                    need: 1,
                    ignored: vec![],
                },
            ),
            (
                "changes requested by a writer block",
                vec![
                    review("bob", Approved, "h2", 1),
                    review("carol", ChangesRequested, "h2", 2),
                ],
                1,
                ApprovalOutcome::Blocked { by: "carol".into() },
            ),
            (
                "two required, one given",
                vec![review("bob", Approved, "h2", 1)],
                2,
                ApprovalOutcome::Waiting {
                    have: 1,
                    need: 2,
                    ignored: vec![],
                },
            ),
            (
                "two required, two given, out of order",
                vec![
                    review("carol", Approved, "h2", 5),
                    review("bob", Approved, "h2", 1),
                ],
                2,
                ApprovalOutcome::Approved {
                    by: vec!["bob".into(), "carol".into()],
                },
            ),
        ];
        for (name, reviews, required, want) in cases {
            assert_eq!(
                &count_approvals(reviews, "h2", "alice", writers, *required),
                want,
                "{name}"
            );
        }
    }
}
