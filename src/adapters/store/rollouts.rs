//! Persistence of rollouts: the core's `RolloutStore` port on `Store` (SQLite's tables from
//! migrations `0003_rollouts.sql`, `0005_rollout_metrics.sql` for the per-interval metric history
//! and `0009_rollout_leases.sql`; PostgreSQL's in `pg::rollouts`), and the rollout leases
//! (`core::rollout::lease`) whose fencing tokens guard a save when several replicas share the
//! store.
//!
//! A transition is saved atomically: the new record and its audit row commit together, and only
//! if the stored record is still the one the transition started from (so two writers cannot both
//! move a rollout). One live rollout per (service, environment) is enforced by a unique index.
//! This module decides nothing: it stores what `step` returned.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use deploybot_core::rollout::lease::{self, Acquire, Claim, Lease};
use deploybot_core::rollout::legacy;
use deploybot_core::rollout::store::{AuditEvent, RolloutStore, RolloutStoreError};
use deploybot_core::rollout::{Effect, Input, MetricPoint, Outcome, Rollout, Transition, Weight};

use crate::adapters::store::{Store, StoreError};

impl From<StoreError> for RolloutStoreError {
    fn from(e: StoreError) -> Self {
        RolloutStoreError::Backend(Box::new(e))
    }
}

pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, rusqlite::Error> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(super) fn parse_record(id: &str, json: &str) -> Result<Rollout, RolloutStoreError> {
    legacy::decode(json).map_err(|e| RolloutStoreError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Migration 0006: rewrites every rollout record stored in format 1 (before the `State` sum
/// type) in today's format, in the migration's transaction. Saving compares the stored record
/// with the one the transition started from, so old records must be in today's exact form.
/// One stored row of `rollout_metrics`, either backend's: the time and the weight are checked,
/// a row that does not read is named.
pub(super) fn metric_point(
    deploy_id: &str,
    at: &str,
    weight: i64,
    metric: String,
    canary: Option<f64>,
    baseline: Option<f64>,
) -> Result<MetricPoint, RolloutStoreError> {
    let corrupt = |message: String| RolloutStoreError::Corrupt {
        id: format!("{deploy_id} (metric {metric} at {at})"),
        message,
    };
    Ok(MetricPoint {
        at: DateTime::parse_from_rfc3339(at)
            .map_err(|e| corrupt(e.to_string()))?
            .with_timezone(&Utc),
        weight: u8::try_from(weight)
            .ok()
            .and_then(Weight::new)
            .ok_or_else(|| corrupt(format!("weight {weight} is not a percentage")))?,
        canary,
        baseline,
        metric,
    })
}

pub(super) fn rewrite_format_1_records(tx: &rusqlite::Transaction) -> Result<(), rusqlite::Error> {
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT id, record FROM rollouts")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (id, json) in rows.iter().filter(|(_, json)| legacy::is_format_1(json)) {
        let upgraded = legacy::decode(json).map_err(|e| {
            rusqlite::Error::ToSqlConversionFailure(
                format!("upgrading rollout record {id}: {e}").into(),
            )
        })?;
        tx.execute(
            "UPDATE rollouts SET record = ?2 WHERE id = ?1",
            params![id, to_json(&upgraded)?],
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_event(
    c: &Connection,
    rollout_id: &str,
    at: DateTime<Utc>,
    actor: &str,
    cause: &str,
    input: Option<&Input>,
    outcome: Outcome,
    note: &str,
    effects: &[Effect],
    phase: &str,
) -> Result<(), rusqlite::Error> {
    let input = input.map(to_json).transpose()?;
    c.execute(
        "INSERT INTO rollout_events \
         (rollout_id, at, actor, cause, input, decision, note, effects, phase) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            rollout_id,
            ts(at),
            actor,
            cause,
            input,
            outcome.as_str(),
            note,
            to_json(&effects)?,
            phase
        ],
    )?;
    Ok(())
}

fn collect_records(rows: Vec<(String, String)>) -> Result<Vec<Rollout>, RolloutStoreError> {
    rows.iter()
        .map(|(id, json)| parse_record(id, json))
        .collect()
}

impl RolloutStore for Store {
    fn create(&self, r: &Rollout, actor: &str) -> Result<(), RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::create(pg, r, actor);
        }
        let outcome = self.with_conn(|c| {
            let tx = c.unchecked_transaction()?;
            let inserted = tx.execute(
                "INSERT INTO rollouts \
                 (id, service, environment, phase, live, record, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    r.deploy_id,
                    r.service(),
                    r.environment(),
                    r.phase().name(),
                    r.is_live(),
                    to_json(r)?,
                    ts(r.created_at),
                    ts(r.updated_at)
                ],
            );
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Ok(Err(())),
                Err(e) => return Err(e),
            }
            insert_event(
                &tx,
                &r.deploy_id,
                r.created_at,
                actor,
                "created",
                None,
                Outcome::Applied,
                &format!(
                    "rollout of {} to {}/{} created",
                    r.image_tag(),
                    r.service(),
                    r.environment()
                ),
                &[],
                r.phase().name(),
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })?;
        if outcome.is_ok() {
            return Ok(());
        }
        // Either the id exists or another rollout is live: name the live one when there is one.
        let existing = self.with_conn(|c| {
            c.query_row(
                "SELECT id FROM rollouts WHERE service = ?1 AND environment = ?2 AND live = 1",
                params![r.service(), r.environment()],
                |row| row.get::<_, String>(0),
            )
            .optional()
        })?;
        Err(RolloutStoreError::LiveConflict {
            id: r.deploy_id.clone(),
            service: r.service().to_string(),
            environment: r.environment().to_string(),
            existing: existing.unwrap_or_else(|| format!("{} itself", r.deploy_id)),
        })
    }

    fn save(
        &self,
        before: &Rollout,
        input: &Input,
        t: &Transition,
    ) -> Result<(), RolloutStoreError> {
        self.save_as(before, input, t, None)
    }

    fn live(&self) -> Result<Vec<Rollout>, RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::live(pg);
        }
        let rows = self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, record FROM rollouts WHERE live = 1 ORDER BY created_at, id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        collect_records(rows)
    }

    fn get(&self, id: &str) -> Result<Option<Rollout>, RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::get(pg, id);
        }
        let row = self.with_conn(|c| {
            c.query_row("SELECT record FROM rollouts WHERE id = ?1", [id], |r| {
                r.get::<_, String>(0)
            })
            .optional()
        })?;
        row.map(|json| parse_record(id, &json)).transpose()
    }

    fn recent(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Rollout>, RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::recent(pg, service, limit);
        }
        let rows = self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, record FROM rollouts WHERE (?1 IS NULL OR service = ?1) \
                 ORDER BY updated_at DESC, id LIMIT ?2",
            )?;
            stmt.query_map(params![service, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })?;
        collect_records(rows)
    }

    fn history(&self, service: &str) -> Result<Vec<AuditEvent>, RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::history(pg, service);
        }
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            String,
            String,
            String,
        );
        let rows: Vec<Row> = self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.seq, e.rollout_id, e.at, e.actor, e.cause, e.input, e.decision, \
                 e.note, e.effects, e.phase \
                 FROM rollout_events e JOIN rollouts r ON r.id = e.rollout_id \
                 WHERE r.service = ?1 ORDER BY e.seq",
            )?;
            stmt.query_map([service], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?
            .collect()
        })?;
        rows.into_iter()
            .map(
                |(seq, rollout_id, at, actor, cause, input, decision, note, effects, phase)| {
                    let corrupt = |message: String| RolloutStoreError::Corrupt {
                        id: format!("{rollout_id} (event {seq})"),
                        message,
                    };
                    Ok(AuditEvent {
                        at: DateTime::parse_from_rfc3339(&at)
                            .map_err(|e| corrupt(e.to_string()))?
                            .with_timezone(&Utc),
                        input: input
                            .map(|j| serde_json::from_str(&j))
                            .transpose()
                            .map_err(|e| corrupt(e.to_string()))?,
                        effects: serde_json::from_str(&effects)
                            .map_err(|e| corrupt(e.to_string()))?,
                        seq,
                        rollout_id,
                        actor,
                        cause,
                        decision,
                        note,
                        phase,
                    })
                },
            )
            .collect()
    }

    fn record_metrics(
        &self,
        deploy_id: &str,
        points: &[MetricPoint],
    ) -> Result<(), RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::record_metrics(pg, deploy_id, points);
        }
        let outcome = self.with_conn(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO rollout_metrics (deploy_id, at, weight, metric, canary, baseline) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (deploy_id, at, metric) DO UPDATE SET \
                     weight = excluded.weight, \
                     canary = coalesce(excluded.canary, canary), \
                     baseline = coalesce(excluded.baseline, baseline)",
                )?;
                for p in points {
                    // SQLite stores NaN as NULL anyway; say so explicitly, and keep infinities out.
                    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
                    let inserted = stmt.execute(params![
                        deploy_id,
                        ts(p.at),
                        p.weight.percent(),
                        p.metric,
                        finite(p.canary),
                        finite(p.baseline)
                    ]);
                    match inserted {
                        Ok(_) => {}
                        Err(e) if is_unique_violation(&e) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
            }
            tx.commit()?;
            Ok(true)
        })?;
        if outcome {
            Ok(())
        } else {
            // The only constraint an upsert can still break is the rollout's foreign key.
            Err(RolloutStoreError::NotFound {
                id: deploy_id.to_string(),
            })
        }
    }

    fn metrics(&self, deploy_id: &str) -> Result<Vec<MetricPoint>, RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::metrics(pg, deploy_id);
        }
        type Row = (String, i64, String, Option<f64>, Option<f64>);
        let rows: Vec<Row> = self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, weight, metric, canary, baseline FROM rollout_metrics \
                 WHERE deploy_id = ?1 ORDER BY at, metric",
            )?;
            stmt.query_map([deploy_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })?;
        rows.into_iter()
            .map(|(at, weight, metric, canary, baseline)| {
                metric_point(deploy_id, &at, weight, metric, canary, baseline)
            })
            .collect()
    }

    /// On either backend a real lease: two handles on one SQLite file share it too.
    fn acquire_lease(
        &self,
        deploy_id: &str,
        holder: &str,
        now: i64,
        ttl: i64,
    ) -> Result<Acquire, RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::acquire_lease(pg, deploy_id, holder, now, ttl);
        }
        let outcome = self.with_conn(|c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let current = lease_row(&tx, deploy_id)?;
            let fence = match lease::claim(current.as_ref(), holder, now) {
                Claim::Held { holder, until } => return Ok(Some(Acquire::Held { holder, until })),
                Claim::Renew { fence } | Claim::Take { fence } => fence,
            };
            let expires_at = now.saturating_add(ttl);
            let written = tx.execute(
                "INSERT INTO rollout_leases (deploy_id, holder, fence, expires_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (deploy_id) DO UPDATE SET \
                 holder = excluded.holder, fence = excluded.fence, \
                 expires_at = excluded.expires_at",
                params![deploy_id, holder, fence, expires_at],
            );
            match written {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
            tx.commit()?;
            Ok(Some(Acquire::Granted(Lease {
                deploy_id: deploy_id.to_string(),
                holder: holder.to_string(),
                fence,
                expires_at,
            })))
        })?;
        // The only constraint the write can break is the rollout's foreign key.
        outcome.ok_or_else(|| RolloutStoreError::NotFound {
            id: deploy_id.to_string(),
        })
    }

    fn save_fenced(
        &self,
        before: &Rollout,
        input: &Input,
        t: &Transition,
        lease: &Lease,
    ) -> Result<(), RolloutStoreError> {
        self.save_as(before, input, t, Some(lease))
    }
}

/// Fenced saves and leases: what several replicas need beyond the `RolloutStore` port.
impl Store {
    /// [`RolloutStore::save`], and with `fence`, only while that lease's token is the rollout's
    /// current one: a replica that was taken over gets `Fenced` and must stop driving it.
    pub fn save_as(
        &self,
        before: &Rollout,
        input: &Input,
        t: &Transition,
        fence: Option<&Lease>,
    ) -> Result<(), RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::save(pg, before, input, t, fence);
        }
        if t.outcome == Outcome::Unchanged && *input == Input::Tick && fence.is_none() {
            return Ok(());
        }
        let id = before.deploy_id.clone();
        let next = &t.next;
        let updated = self.with_conn(|c| {
            // IMMEDIATE: the lease read and the write are one, against another process too.
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            if let Some(mine) = fence {
                if !lease::still_holds(lease_row(&tx, &id)?.as_ref(), mine) {
                    return Ok(Saved::Fenced(mine.fence));
                }
                if t.outcome == Outcome::Unchanged && *input == Input::Tick {
                    return Ok(Saved::Yes);
                }
            }
            let n = tx.execute(
                "UPDATE rollouts SET phase = ?2, live = ?3, record = ?4, updated_at = ?5 \
                 WHERE id = ?1 AND record = ?6",
                params![
                    id,
                    next.phase().name(),
                    next.is_live(),
                    to_json(next)?,
                    ts(next.updated_at),
                    to_json(before)?
                ],
            )?;
            if n == 0 {
                return Ok(Saved::No);
            }
            insert_event(
                &tx,
                &id,
                t.at,
                &input.actor(),
                &input.name(),
                Some(input),
                t.outcome,
                &t.note,
                &t.effects,
                next.phase().name(),
            )?;
            tx.commit()?;
            Ok(Saved::Yes)
        })?;
        match updated {
            Saved::Yes => return Ok(()),
            Saved::Fenced(fence) => return Err(RolloutStoreError::Fenced { id, fence }),
            Saved::No => {}
        }
        match self.get(&id)? {
            Some(_) => Err(RolloutStoreError::Conflict { id }),
            None => Err(RolloutStoreError::NotFound { id }),
        }
    }

    /// The current lease of a rollout, if any.
    pub fn lease_of(&self, deploy_id: &str) -> Result<Option<Lease>, RolloutStoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::rollouts::lease_of(pg, deploy_id);
        }
        Ok(self.with_conn(|c| lease_row(c, deploy_id))?)
    }
}

/// What a save came to inside its transaction.
enum Saved {
    Yes,
    /// The record was not the one the transition started from (or is gone).
    No,
    /// The lease's token (this one) is no longer the rollout's.
    Fenced(i64),
}

fn lease_row(c: &Connection, deploy_id: &str) -> Result<Option<Lease>, rusqlite::Error> {
    c.query_row(
        "SELECT holder, fence, expires_at FROM rollout_leases WHERE deploy_id = ?1",
        [deploy_id],
        |r| {
            Ok(Lease {
                deploy_id: deploy_id.to_string(),
                holder: r.get(0)?,
                fence: r.get(1)?,
                expires_at: r.get(2)?,
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::risk::Strategy;
    use deploybot_core::rollout::testing::{t, trigger};
    use deploybot_core::rollout::{Command, Observation, Release, Settings, Trigger, Weight, step};

    fn rollout(id: &str, service: &str, env: &str) -> Rollout {
        Rollout::new(
            Trigger {
                release: Release {
                    image_tag: format!("sha-{id}"),
                    ..trigger(id, service, env).release
                },
                ..trigger(id, service, env)
            },
            Settings::default(),
            t(0),
        )
    }

    /// Steps and saves; returns the new record.
    fn apply(store: &Store, r: &Rollout, input: Input, at: i64) -> Rollout {
        let tr = step(r, input.clone(), t(at));
        store.save(r, &input, &tr).unwrap();
        tr.next
    }

    /// A store written by the version before the `State` sum type (the demo's real database:
    /// two completed rollouts and a rolled-back one with their audit trails and metrics), plus
    /// one format-1 record for every state a rollout could be in, each of its own service so
    /// the live ones do not collide. Opening it migrates every record once; each reads back as
    /// what it was, and a live one keeps moving.
    #[test]
    fn a_store_written_before_the_state_type_opens_migrated_and_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploybot.sqlite3");
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rollout");
        std::fs::copy(fixtures.join("store-v1.sqlite3"), &path).unwrap();
        let mut old = Vec::new();
        {
            let c = Connection::open(&path).unwrap();
            let version: i64 = c
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, 5, "the fixture is a format-1 store");
            for entry in std::fs::read_dir(fixtures.join("records-v1")).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_str().unwrap().to_string();
                let mut v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                v["deploy_id"] = name.clone().into();
                v["service"] = name.clone().into();
                let phase: deploybot_core::rollout::Phase =
                    serde_json::from_value(v["phase"].clone()).unwrap();
                let owed = v["revert"].is_object()
                    && v["revert"]["sha"].is_null()
                    && v["revert"]["failed"].is_null();
                let live = !phase.is_terminal() || owed;
                c.execute(
                    "INSERT INTO rollouts (id, service, environment, phase, live, record, \
                     created_at, updated_at) VALUES (?1, ?1, 'production', ?2, ?3, ?4, ?5, ?5)",
                    params![
                        name,
                        phase.name(),
                        live,
                        v.to_string(),
                        "2026-11-26T10:00:00.000Z"
                    ],
                )
                .unwrap();
                old.push((name, phase, live));
            }
        }
        assert_eq!(old.len(), 19);
        let store = Store::open(&path).unwrap();
        let raw: Vec<String> = store
            .with_conn(|c| {
                let mut stmt = c.prepare("SELECT record FROM rollouts")?;
                stmt.query_map([], |r| r.get(0))?.collect()
            })
            .unwrap();
        assert_eq!(raw.len(), 22, "the demo's three and the nineteen");
        assert!(raw.iter().all(|j| !legacy::is_format_1(j)), "all rewritten");
        for (id, phase, live) in &old {
            let r = store.get(id).unwrap().unwrap();
            assert_eq!((&r.phase(), r.is_live()), (phase, *live), "{id}");
        }
        let demo = store.get("checkout-staging-1.5.1").unwrap().unwrap();
        assert!(demo.reverted_as().is_some(), "{:?}", demo.state);
        assert_eq!(
            store.history("checkout").unwrap().len(),
            95,
            "the audit trail is kept"
        );
        assert_eq!(
            store.metrics("checkout-production-1.5.0").unwrap().len(),
            34
        );
        // A migrated live rollout keeps moving: its stored record is today's exact form.
        let r = store.get("live-judged").unwrap().unwrap();
        let next = apply(
            &store,
            &r,
            Input::Command {
                cmd: Command::Pause,
                by: "ops".into(),
            },
            5000,
        );
        assert_eq!(store.get("live-judged").unwrap().unwrap(), next);
        // And reopening does not migrate again.
        drop(store);
        let again = Store::open(&path).unwrap();
        assert_eq!(again.get("live-judged").unwrap().unwrap(), next);
    }

    #[test]
    fn transitions_survive_a_reopen_with_their_audit_trail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploybot.sqlite3");
        let id;
        {
            let store = Store::open(&path).unwrap();
            let mut r = rollout("d1", "checkout", "staging");
            id = r.deploy_id.clone();
            store.create(&r, "@alice").unwrap();
            r = apply(
                &store,
                &r,
                Input::Assessed {
                    risk_score: 0.3,
                    strategy: Strategy::Canary10,
                    approval_required: false,
                },
                1,
            );
            r = apply(
                &store,
                &r,
                Input::Committed {
                    sha: "c1".into(),
                    weight: Weight::new(10).unwrap(),
                },
                2,
            );
            // A tick with nothing due is not worth an audit row; a rejected input is.
            r = apply(&store, &r, Input::Tick, 3);
            apply(&store, &r, Input::judged(Observation::Promote), 4);
        }
        let store = Store::open(&path).unwrap();
        let live = store.live().unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].deploy_id, id);
        assert_eq!(live[0].commits.len(), 1);
        assert_eq!(store.get(&id).unwrap().unwrap(), live[0]);
        let trail = store.history("checkout").unwrap();
        let causes: Vec<(&str, &str)> = trail
            .iter()
            .map(|e| (e.cause.as_str(), e.decision.as_str()))
            .collect();
        assert_eq!(
            causes,
            [
                ("created", "applied"),
                ("assessed", "applied"),
                ("committed", "applied"),
                ("judged:promote", "rejected"),
            ]
        );
        assert_eq!(trail[1].actor, "risk");
        assert!(matches!(trail[1].effects[0], Effect::CommitStep { .. }));
        assert_eq!(trail[2].phase, "canary");
        assert!(store.history("other").unwrap().is_empty());
    }

    fn point(at: i64, metric: &str, canary: Option<f64>, baseline: Option<f64>) -> MetricPoint {
        MetricPoint {
            at: t(at),
            weight: Weight::new(10).unwrap(),
            metric: metric.into(),
            canary,
            baseline,
        }
    }

    #[test]
    fn metrics_of_an_unknown_rollout_are_refused_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let err = store
            .record_metrics("ghost", &[point(60, "error_rate", Some(0.1), Some(0.1))])
            .unwrap_err();
        assert!(
            matches!(&err, RolloutStoreError::NotFound { id } if id == "ghost"),
            "{err}"
        );
        // Non-finite values are stored as missing, not as a number the chart would misdraw.
        store
            .create(&rollout("d1", "checkout", "staging"), "@a")
            .unwrap();
        store
            .record_metrics(
                "d1",
                &[point(60, "error_rate", Some(f64::NAN), Some(f64::INFINITY))],
            )
            .unwrap();
        assert_eq!(
            store.metrics("d1").unwrap(),
            [point(60, "error_rate", None, None)]
        );
    }
}
