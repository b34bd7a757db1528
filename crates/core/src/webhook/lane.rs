//! Which deliveries the worker may process side by side, and which it starts next.
//!
//! Every queued delivery is [`place`]d when it arrives: a [`Lane`] (commands such as `/rollback`
//! have their own, so they never wait behind assessments waiting on a slow model) and an ordering
//! key (the pull request it is about). Deliveries with different keys run in parallel; deliveries
//! with the same key run one at a time, in arrival order, even when the earlier one waits for a
//! retry. [`next`] decides, from the queue's metadata alone, what to start now; the memory the
//! started payloads take is bounded by [`fits`].

use std::collections::BTreeSet;

use crate::webhook::route::Route;

/// Where a delivery waits for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Commands on pull requests: few, small, and the ones a person waits for.
    Commands,
    /// Everything else: assessments, approvals, checks, pings.
    Work,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Commands => "commands",
            Lane::Work => "work",
        }
    }

    /// The stored spelling back; anything unknown (a row from before lanes) is work.
    pub fn parse(s: &str) -> Lane {
        match s {
            "commands" => Lane::Commands,
            _ => Lane::Work,
        }
    }
}

/// A delivery's lane and the key it keeps its order by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub lane: Lane,
    /// Deliveries with equal keys are processed one at a time, in arrival order.
    pub key: String,
}

/// The key of rows queued before lanes existed: they keep the single line they were queued in.
pub const LEGACY_KEY: &str = "legacy";

/// Places a delivery by its route. A pull request's assessments, reviews and merges keep their
/// order (`pr:`); commands on it keep theirs, apart from the assessments (`cmd:`); releases
/// waiting for checks are re-examined one at a time (`checks`); a ping is independent.
pub fn place(route: &Route, delivery_id: &str) -> Placement {
    let pr = |repo: &dyn std::fmt::Display, number: u64| {
        format!("{}#{number}", repo.to_string().to_ascii_lowercase())
    };
    let (lane, key) = match route {
        Route::Command(c) => (Lane::Commands, format!("cmd:{}", pr(&c.repo, c.number))),
        Route::Assess { repo, number, .. }
        | Route::ApprovalMerged { repo, number, .. }
        | Route::Review { repo, number } => (Lane::Work, format!("pr:{}", pr(repo, *number))),
        Route::ChecksChanged => (Lane::Work, "checks".to_string()),
        Route::Ping { .. } | Route::Ignore { .. } => {
            (Lane::Work, format!("delivery:{delivery_id}"))
        }
    };
    Placement { lane, key }
}

/// A pending delivery as the scheduler sees it: no payload, only its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub seq: i64,
    pub lane: Lane,
    pub key: String,
    /// Its retry wait (if any) is over.
    pub due: bool,
    pub bytes: usize,
}

/// What the worker has in hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Keys of the deliveries being processed.
    pub keys: BTreeSet<String>,
    /// Deliveries being processed, per lane.
    pub work: usize,
    pub commands: usize,
    /// Payload bytes held by the deliveries being processed.
    pub bytes: usize,
}

/// How much the worker may have in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub work: usize,
    pub commands: usize,
    /// Payload bytes held at once, both lanes together.
    pub budget_bytes: usize,
}

/// Bytes of the budget the work lane leaves free, so that a command (a comment's payload is tens
/// of kilobytes) never waits for memory behind large pull requests.
pub const COMMAND_RESERVE_BYTES: usize = 1024 * 1024;

/// Whether a payload of `bytes` may be loaded now: within the lane's share of the budget, or
/// alone (so that a delivery as large as the whole budget is still processed once the others
/// are done).
pub fn fits(lane: Lane, bytes: usize, held: usize, budget: usize) -> bool {
    let limit = match lane {
        Lane::Commands => budget,
        Lane::Work => budget.saturating_sub(COMMAND_RESERVE_BYTES),
    };
    held == 0 || held.saturating_add(bytes) <= limit
}

/// The deliveries to start now, in the order to start them. `waiting` is the queue, oldest
/// first, without the deliveries in flight.
///
/// A delivery starts when its retry wait is over, no earlier delivery with its key is waiting or
/// in flight, its lane has a free slot, and its payload [`fits`]. Once a work delivery does not
/// fit, no later work delivery starts either, so small ones cannot starve a large one; commands
/// are never held back by work.
pub fn next(waiting: &[Waiting], in_flight: &InFlight, capacity: Capacity) -> Vec<i64> {
    let mut seen: BTreeSet<&str> = in_flight.keys.iter().map(String::as_str).collect();
    let mut free_work = capacity.work.saturating_sub(in_flight.work);
    let mut free_commands = capacity.commands.saturating_sub(in_flight.commands);
    let mut held = in_flight.bytes;
    let mut work_blocked = false;
    let mut start = Vec::new();
    for w in waiting {
        // First sight of a key claims it: every later delivery with it waits for this one.
        if !seen.insert(&w.key) || !w.due {
            continue;
        }
        let free = match w.lane {
            Lane::Work if work_blocked => continue,
            Lane::Work => &mut free_work,
            Lane::Commands => &mut free_commands,
        };
        if *free == 0 {
            continue;
        }
        if !fits(w.lane, w.bytes, held, capacity.budget_bytes) {
            work_blocked |= w.lane == Lane::Work;
            continue;
        }
        *free -= 1;
        held = held.saturating_add(w.bytes);
        start.push(w.seq);
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::RepoName;
    use crate::webhook::route::Comment;

    fn repo() -> RepoName {
        "Acme/Shop".parse().unwrap()
    }

    #[test]
    fn each_route_is_placed_in_its_lane_under_its_key() {
        let comment = Comment {
            repo: repo(),
            number: 7,
            service: None,
            comment_id: 1,
            author: "a".into(),
            body: "/rollback".into(),
        };
        let rows: Vec<(&str, Route, Lane, &str)> = vec![
            (
                "a command",
                Route::Command(comment),
                Lane::Commands,
                "cmd:acme/shop#7",
            ),
            (
                "an assessment",
                Route::Assess {
                    repo: repo(),
                    number: 7,
                    service: "shop".into(),
                    head_sha: "abc".into(),
                    merged: None,
                },
                Lane::Work,
                "pr:acme/shop#7",
            ),
            (
                "a review",
                Route::Review {
                    repo: repo(),
                    number: 7,
                },
                Lane::Work,
                "pr:acme/shop#7",
            ),
            (
                "an approval merge",
                Route::ApprovalMerged {
                    repo: repo(),
                    number: 7,
                    merged_by: "b".into(),
                },
                Lane::Work,
                "pr:acme/shop#7",
            ),
            ("checks", Route::ChecksChanged, Lane::Work, "checks"),
            (
                "a ping",
                Route::Ping {
                    repo: None,
                    zen: None,
                },
                Lane::Work,
                "delivery:d-1",
            ),
        ];
        for (name, route, lane, key) in rows {
            let p = place(&route, "d-1");
            assert_eq!((p.lane, p.key.as_str()), (lane, key), "row {name:?}");
        }
    }

    #[test]
    fn lanes_round_trip_and_unknown_is_work() {
        for lane in [Lane::Commands, Lane::Work] {
            assert_eq!(Lane::parse(lane.as_str()), lane);
        }
        assert_eq!(Lane::parse(""), Lane::Work);
    }

    fn w(seq: i64, lane: Lane, key: &str, due: bool, bytes: usize) -> Waiting {
        Waiting {
            seq,
            lane,
            key: key.into(),
            due,
            bytes,
        }
    }

    const MIB: usize = 1024 * 1024;

    fn check(
        name: &str,
        waiting: &[Waiting],
        in_flight: &InFlight,
        capacity: Capacity,
        want: &[i64],
    ) {
        assert_eq!(next(waiting, in_flight, capacity), want, "row {name:?}");
    }

    #[test]
    fn what_starts_next() {
        use Lane::{Commands as C, Work as W};
        let cap = Capacity {
            work: 2,
            commands: 1,
            budget_bytes: 64 * MIB,
        };
        let idle = InFlight::default();
        let busy_pr1 = InFlight {
            keys: ["pr:1".to_string()].into(),
            work: 1,
            commands: 0,
            bytes: 10,
        };
        check(
            "different keys run side by side, up to the lane's slots",
            &[
                w(1, W, "pr:1", true, 10),
                w(2, W, "pr:2", true, 10),
                w(3, W, "pr:3", true, 10),
            ],
            &idle,
            cap,
            &[1, 2],
        );
        check(
            "a key's later delivery waits for its earlier one",
            &[
                w(1, W, "pr:1", true, 10),
                w(2, W, "pr:1", true, 10),
                w(3, W, "pr:3", true, 10),
            ],
            &idle,
            cap,
            &[1, 3],
        );
        check(
            "a key in flight holds its queued deliveries back",
            &[w(2, W, "pr:1", true, 10), w(3, W, "pr:3", true, 10)],
            &busy_pr1,
            cap,
            &[3],
        );
        check(
            "a delivery waiting for its retry holds back its key only",
            &[
                w(1, W, "pr:1", false, 10),
                w(2, W, "pr:1", true, 10),
                w(3, W, "pr:3", true, 10),
            ],
            &idle,
            cap,
            &[3],
        );
        check(
            "commands have their own slots: a full work lane does not hold them",
            &[
                w(1, W, "pr:1", true, 10),
                w(2, W, "pr:2", true, 10),
                w(3, W, "pr:3", true, 10),
                w(4, C, "cmd:1", true, 10),
            ],
            &idle,
            cap,
            &[1, 2, 4],
        );
        check(
            "a command does not wait for its PR's assessment",
            &[w(2, C, "cmd:1", true, 10)],
            &busy_pr1,
            cap,
            &[2],
        );
        check(
            "commands keep their order among themselves",
            &[w(1, C, "cmd:1", true, 10), w(2, C, "cmd:1", true, 10)],
            &idle,
            Capacity { commands: 2, ..cap },
            &[1],
        );
        check(
            "payloads beyond the budget wait; later work waits behind them",
            &[
                w(1, W, "pr:1", true, 40 * MIB),
                w(2, W, "pr:2", true, 40 * MIB),
                w(3, W, "pr:3", true, 10),
            ],
            &idle,
            cap,
            &[1],
        );
        check(
            "a command fits in the reserve the work lane leaves",
            &[
                w(1, W, "pr:1", true, 63 * MIB),
                w(2, C, "cmd:1", true, 100 * 1024),
            ],
            &idle,
            cap,
            &[1, 2],
        );
        check(
            "one delivery as large as the budget starts when nothing else is held",
            &[w(1, W, "pr:1", true, 64 * MIB)],
            &idle,
            cap,
            &[1],
        );
        check(
            "nothing starts in a full lane",
            &[w(2, W, "pr:2", true, 10)],
            &InFlight {
                work: 2,
                ..busy_pr1.clone()
            },
            cap,
            &[],
        );
    }

    #[test]
    fn the_work_lane_leaves_the_command_reserve() {
        let budget = 8 * MIB;
        assert!(fits(Lane::Work, 7 * MIB, 0, budget), "alone, anything fits");
        assert!(!fits(Lane::Work, 7 * MIB + 1, 1, budget));
        assert!(fits(Lane::Commands, 1, 8 * MIB - 1, budget));
        assert!(!fits(Lane::Commands, 2, 8 * MIB - 1, budget));
    }
}
