//! Admission: what a release asking to start in an environment gets, decided from what the
//! store says about that environment ([`admit`]), and which completed rollouts move on to the
//! next environment ([`promotions`]). Pure: the shell reads the environment, calls these, and
//! executes the answer (create the rollout, supersede the old one, refuse, or queue).
//!
//! Cross-rollout rules live here and nowhere else: a held service starts nothing; a release
//! already rolling out is not started twice (a redelivered webhook); a new version supersedes
//! the live one (and inherits its commits: a rollback of the new one reverts them too), or
//! queues behind it when the service says `on_new_version: queue`; and a release verified in
//! one environment starts once in the next.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::OnNewVersion;
use super::input::Input;
use super::record::{Phase, Release, Rollout, Settings, Target, Trigger};
use crate::risk::Strategy;

/// The risk assessment's word, in rollout terms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub risk_score: f64,
    pub strategy: Strategy,
    pub approval_required: bool,
}

impl Gate {
    pub fn from_assessment(a: &crate::risk::Assessment) -> Gate {
        Gate {
            risk_score: a.risk_score,
            strategy: a.recommended_strategy,
            approval_required: a.requires_manual_approval,
        }
    }
}

/// A service held in an environment: a rollback or an emergency hold left it so, and nothing
/// starts there until a human releases it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldService {
    pub service: String,
    pub environment: String,
    /// The rollout that held it.
    pub deploy_id: String,
    pub reason: String,
    pub since: String,
}

/// What the store says about the environment a release asks to start in.
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    /// The hold on the service here, if any.
    pub hold: Option<&'a HeldService>,
    /// The service's live rollout here, if any.
    pub live: Option<&'a Rollout>,
    /// Every earlier rollout of this release's image tag here, in the order of their ids
    /// (`deploy_id(.., 1)`, `(.., 2)`, ...).
    pub same_tag: &'a [Rollout],
    /// The image tag of the newest rollout that completed here.
    pub last_completed_tag: Option<&'a str>,
}

/// Where and how the service ships in this environment (from its config).
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub target: Target,
    pub settings: Settings,
    /// The environment always needs a human's approval, whatever the risk.
    pub require_approval: bool,
    pub on_new_version: OnNewVersion,
}

/// The answer to a release asking to start.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Create `rollout` and feed it `first`.
    Start { rollout: Box<Rollout>, first: Input },
    /// Supersede the live rollout `superseded`, then start as above.
    Supersede {
        rollout: Box<Rollout>,
        first: Input,
        superseded: String,
    },
    /// This release already rolls out here as `deploy_id` (a redelivered trigger).
    AlreadyRunning { deploy_id: String },
    /// New versions queue here and `behind` is live, or `behind` still reverts what it shipped:
    /// start when it ends.
    Queue { behind: String },
    /// The service is held here.
    Held { hold: HeldService },
}

/// The id of the `n`th rollout (from 1) of `tag` to `environment`: readable and deterministic,
/// so a redelivered trigger finds the rollout it already started.
pub fn deploy_id(service: &str, environment: &str, tag: &str, n: usize) -> String {
    let base = format!("{service}-{environment}-{tag}");
    if n <= 1 { base } else { format!("{base}-{n}") }
}

/// Decides what `release` gets in `env`.
pub fn admit(
    env: Environment<'_>,
    release: &Release,
    gate: Gate,
    dest: &Destination,
    now: DateTime<Utc>,
) -> Admission {
    if let Some(hold) = env.hold {
        return Admission::Held { hold: hold.clone() };
    }
    if let Some(r) = env.same_tag.iter().find(|r| r.is_live()) {
        return Admission::AlreadyRunning {
            deploy_id: r.deploy_id.clone(),
        };
    }
    // A rollout still reverting what it shipped (superseded, or rolled back) owns the
    // environment until its revert is in: whatever starts now waits.
    if let Some(r) = env.live.filter(|r| r.revert_owed()) {
        return Admission::Queue {
            behind: r.deploy_id.clone(),
        };
    }
    let live = env.live.filter(|r| !r.phase().is_terminal());
    if let (OnNewVersion::Queue, Some(live)) = (dest.on_new_version, live) {
        return Admission::Queue {
            behind: live.deploy_id.clone(),
        };
    }
    let id = deploy_id(
        &release.service,
        &dest.target.environment,
        &release.image_tag,
        env.same_tag.len() + 1,
    );
    // "Was" is what deploybot last completed here, when the trigger did not say.
    let previous_tag = if release.previous_tag.is_empty() {
        env.last_completed_tag.unwrap_or_default().to_string()
    } else {
        release.previous_tag.clone()
    };
    let rollout = Box::new(Rollout::new(
        Trigger {
            deploy_id: id,
            target: dest.target.clone(),
            release: Release {
                previous_tag,
                ..release.clone()
            },
        },
        dest.settings.clone(),
        now,
    ));
    let first = Input::Assessed {
        risk_score: gate.risk_score,
        strategy: gate.strategy,
        approval_required: gate.approval_required || dest.require_approval,
    };
    match live {
        Some(old) => {
            // The old rollout's steps stay in the environment until the new one's replace them:
            // a rollback of the new one reverts them too, back to the last completed version.
            let mut rollout = rollout;
            rollout.supersedes = std::iter::once(old.deploy_id.clone())
                .chain(old.supersedes.iter().cloned())
                .collect();
            Admission::Supersede {
                rollout,
                first,
                superseded: old.deploy_id.clone(),
            }
        }
        None => Admission::Start { rollout, first },
    }
}

/// A release verified in one environment, due in the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The completed rollout it comes from.
    pub from: String,
    pub release: Release,
    pub gate: Gate,
    pub environment: String,
}

/// Which completed rollouts among `recent` start their release in the next environment: those
/// whose service has an environment after theirs (`environments` gives a service's, in order)
/// and whose release has not started there since. Each is found once: the next tick sees the
/// rollout it started.
pub fn promotions<'a>(
    recent: &[Rollout],
    environments: impl Fn(&str) -> Option<&'a [String]>,
) -> Vec<Promotion> {
    let mut out = Vec::new();
    for done in recent.iter().filter(|r| r.phase() == Phase::Complete) {
        let Some(envs) = environments(done.service()) else {
            continue;
        };
        let Some(next) = envs
            .iter()
            .position(|e| e == done.environment())
            .and_then(|i| envs.get(i + 1))
        else {
            continue;
        };
        let started = recent.iter().any(|r| {
            r.service() == done.service()
                && r.environment() == next
                && r.image_tag() == done.image_tag()
                && r.created_at >= done.created_at
        });
        let Some(course) = done.course() else {
            continue;
        };
        if started {
            continue;
        }
        out.push(Promotion {
            from: done.deploy_id.clone(),
            release: done.release.clone(),
            gate: Gate {
                risk_score: course.risk_score,
                strategy: course.strategy,
                approval_required: matches!(
                    course.approval,
                    super::record::Approval::Required { .. }
                ),
            },
            environment: next.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::testing::{t, trigger};
    use crate::rollout::{Command, Observation, Weight, step};

    fn dest(on_new_version: OnNewVersion, require_approval: bool) -> Destination {
        Destination {
            target: trigger("x", "checkout", "production").target,
            settings: Settings::default(),
            require_approval,
            on_new_version,
        }
    }

    fn release(tag: &str) -> Release {
        Release {
            image_tag: tag.into(),
            previous_tag: String::new(),
            ..trigger("x", "checkout", "production").release
        }
    }

    const GATE: Gate = Gate {
        risk_score: 0.3,
        strategy: Strategy::Canary10,
        approval_required: false,
    };

    /// A rollout of `tag` driven by `inputs` (each accepted).
    fn rollout(id: &str, env: &str, tag: &str, inputs: &[Input]) -> Rollout {
        let mut tr = trigger(id, "checkout", env);
        tr.release.image_tag = tag.into();
        let mut r = Rollout::new(tr, Settings::default(), t(0));
        for (i, input) in inputs.iter().enumerate() {
            let next = step(&r, input.clone(), t(1 + i as i64 * 700));
            assert_ne!(
                next.outcome,
                super::super::Outcome::Rejected,
                "{}",
                next.note
            );
            r = next.next;
        }
        r
    }

    fn assessed(strategy: Strategy) -> Input {
        Input::Assessed {
            risk_score: 0.5,
            strategy,
            approval_required: true,
        }
    }

    fn complete(id: &str, env: &str, tag: &str) -> Rollout {
        rollout(
            id,
            env,
            tag,
            &[
                Input::Assessed {
                    risk_score: 0.5,
                    strategy: Strategy::Direct,
                    approval_required: false,
                },
                Input::Committed {
                    sha: "c1".into(),
                    weight: Weight::FULL,
                },
                Input::Synced {
                    revision: "c1".into(),
                },
                Input::judged(Observation::Promote),
            ],
        )
    }

    fn live(id: &str, tag: &str) -> Rollout {
        rollout(id, "production", tag, &[assessed(Strategy::Canary5)])
    }

    fn rolled_back(id: &str, tag: &str) -> Rollout {
        rollout(
            id,
            "production",
            tag,
            &[
                assessed(Strategy::Canary5),
                Input::Command {
                    cmd: Command::Rollback,
                    by: "ops".into(),
                },
            ],
        )
    }

    fn held() -> HeldService {
        HeldService {
            service: "checkout".into(),
            environment: "production".into(),
            deploy_id: "checkout-production-v1".into(),
            reason: "judge: error_rate regressed".into(),
            since: "2026-11-26T10:00:00Z".into(),
        }
    }

    /// The answer's shape, for the table: what it is and the ids it names.
    fn shape(a: &Admission) -> String {
        match a {
            Admission::Start { rollout, first } => format!(
                "start {} (was {:?}, approval {})",
                rollout.deploy_id,
                rollout.release.previous_tag,
                matches!(
                    first,
                    Input::Assessed {
                        approval_required: true,
                        ..
                    }
                )
            ),
            Admission::Supersede {
                rollout,
                superseded,
                ..
            } => format!("supersede {superseded} with {}", rollout.deploy_id),
            Admission::AlreadyRunning { deploy_id } => format!("already {deploy_id}"),
            Admission::Queue { behind } => format!("queue behind {behind}"),
            Admission::Held { hold } => format!("held by {}", hold.deploy_id),
        }
    }

    /// One row: the environment, the policy, and the expected answer. A failure names the row.
    #[track_caller]
    fn check(row: &str, env: Environment<'_>, dest: &Destination, want: &str) {
        let got = admit(env, &release("v2"), GATE, dest, t(5000));
        assert_eq!(shape(&got), want, "row {row}");
    }

    /// A rollout that supersedes another inherits it and what it had inherited: a rollback
    /// reverts all their commits, back to the last completed version.
    #[test]
    fn a_rollout_that_supersedes_inherits_what_its_rollback_reverts() {
        let mut old = live("checkout-production-v1", "v1");
        old.supersedes = vec!["checkout-production-v0".into()];
        let env = Environment {
            hold: None,
            live: Some(&old),
            same_tag: &[],
            last_completed_tag: None,
        };
        let got = admit(
            env,
            &release("v2"),
            GATE,
            &dest(OnNewVersion::Supersede, false),
            t(5000),
        );
        let Admission::Supersede { rollout, .. } = got else {
            panic!("{}", shape(&got))
        };
        assert_eq!(
            rollout.supersedes,
            ["checkout-production-v1", "checkout-production-v0"]
        );
        let fresh = admit(
            Environment { live: None, ..env },
            &release("v2"),
            GATE,
            &dest(OnNewVersion::Supersede, false),
            t(5000),
        );
        let Admission::Start { rollout, .. } = fresh else {
            panic!("{}", shape(&fresh))
        };
        assert!(rollout.supersedes.is_empty());
    }

    #[test]
    fn admission_table() {
        let empty = Environment {
            hold: None,
            live: None,
            same_tag: &[],
            last_completed_tag: None,
        };
        let supersede = dest(OnNewVersion::Supersede, false);
        let queue = dest(OnNewVersion::Queue, false);
        let old = live("checkout-production-v1", "v1");
        let hold = held();
        let again = [live("checkout-production-v2", "v2")];
        let retried = [rolled_back("checkout-production-v2", "v2")];

        check(
            "empty environment: start",
            empty,
            &supersede,
            r#"start checkout-production-v2 (was "", approval false)"#,
        );
        check(
            "the previous tag is the last one completed here",
            Environment {
                last_completed_tag: Some("v1"),
                ..empty
            },
            &supersede,
            r#"start checkout-production-v2 (was "v1", approval false)"#,
        );
        check(
            "the environment requires approval whatever the risk",
            empty,
            &dest(OnNewVersion::Supersede, true),
            r#"start checkout-production-v2 (was "", approval true)"#,
        );
        check(
            "a live rollout is superseded",
            Environment {
                live: Some(&old),
                ..empty
            },
            &supersede,
            "supersede checkout-production-v1 with checkout-production-v2",
        );
        check(
            "or queued behind",
            Environment {
                live: Some(&old),
                ..empty
            },
            &queue,
            "queue behind checkout-production-v1",
        );
        check(
            "a held service starts nothing",
            Environment {
                hold: Some(&hold),
                ..empty
            },
            &supersede,
            "held by checkout-production-v1",
        );
        check(
            "held beats queued",
            Environment {
                hold: Some(&hold),
                live: Some(&old),
                ..empty
            },
            &queue,
            "held by checkout-production-v1",
        );
        check(
            "a redelivered trigger finds its rollout",
            Environment {
                same_tag: &again,
                live: Some(&again[0]),
                ..empty
            },
            &queue,
            "already checkout-production-v2",
        );
        check(
            "the same tag again after a rollback is the second rollout of it",
            Environment {
                same_tag: &retried,
                ..empty
            },
            &supersede,
            r#"start checkout-production-v2-2 (was "", approval false)"#,
        );
        // Shipping its first step directly (no approval), then rolled back.
        let shipping = Input::Assessed {
            risk_score: 0.5,
            strategy: Strategy::Canary5,
            approval_required: false,
        };
        let rollback = Input::Command {
            cmd: Command::Rollback,
            by: "ops".into(),
        };
        let v1 = |inputs: &[Input]| rollout("checkout-production-v1", "production", "v1", inputs);
        let reverting = v1(&[shipping.clone(), rollback.clone()]);
        let ended = v1(&[
            assessed(Strategy::Canary5),
            rollback,
            Input::Reverted { sha: "r1".into() },
        ]);
        check(
            "an ended rollout is not superseded",
            Environment {
                live: Some(&ended),
                ..empty
            },
            &queue,
            r#"start checkout-production-v2 (was "", approval false)"#,
        );
        check(
            "a rollout still reverting what it shipped holds the environment",
            Environment {
                live: Some(&reverting),
                ..empty
            },
            &supersede,
            "queue behind checkout-production-v1",
        );
        let superseding = v1(&[
            shipping,
            Input::Superseded {
                by_deploy_id: "checkout-production-v9".into(),
            },
        ]);
        check(
            "so does one superseded whose steps are still being reverted",
            Environment {
                live: Some(&superseding),
                ..empty
            },
            &supersede,
            "queue behind checkout-production-v1",
        );
    }

    #[test]
    fn a_previous_tag_given_by_the_trigger_is_kept() {
        let env = Environment {
            hold: None,
            live: None,
            same_tag: &[],
            last_completed_tag: Some("v0"),
        };
        let r = Release {
            previous_tag: "v1".into(),
            ..release("v2")
        };
        let Admission::Start { rollout, .. } =
            admit(env, &r, GATE, &dest(OnNewVersion::Supersede, false), t(0))
        else {
            panic!()
        };
        assert_eq!(rollout.release.previous_tag, "v1");
    }

    #[test]
    fn promotions_table() {
        let envs = ["staging".to_string(), "production".to_string()];
        let of = |s: &str| (s == "checkout").then_some(&envs[..]);
        let done = complete("checkout-staging-v2", "staging", "v2");
        let ids = |recent: &[Rollout]| {
            promotions(recent, of)
                .into_iter()
                .map(|p| format!("{} -> {} ({})", p.from, p.environment, p.gate.strategy))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(std::slice::from_ref(&done)),
            ["checkout-staging-v2 -> production (direct)"],
            "a release verified in staging goes to production"
        );
        let mut started = complete("checkout-production-v2", "production", "v2");
        started.created_at = done.created_at;
        assert!(
            ids(&[done.clone(), started]).is_empty(),
            "and only once: the next tick sees the rollout it started"
        );
        let last = complete("checkout-production-v3", "production", "v3");
        assert!(
            ids(&[last]).is_empty(),
            "production is the last environment"
        );
        let live = live("checkout-staging-v4", "v4");
        assert!(ids(&[live]).is_empty(), "only completed rollouts promote");
        let unknown = |_: &str| None;
        assert!(
            promotions(&[done], unknown).is_empty(),
            "a service no longer configured"
        );
    }
}
