//! Rollouts on PostgreSQL: the records, their audit trail and metric history, saved as the SQLite
//! module saves them (a transition commits with its audit row, and only over the record it
//! started from), and the rollout leases whose fencing tokens guard those saves across replicas.

use chrono::{DateTime, Utc};
use deploybot_core::rollout::lease::{self, Acquire, Claim, Lease};
use deploybot_core::rollout::store::{AuditEvent, RolloutStoreError};
use deploybot_core::rollout::{Effect, Input, MetricPoint, Outcome, Rollout, Transition};

use super::{Postgres, is_foreign_key_violation, is_unique_violation, pg_err};
use crate::adapters::store::StoreError;
use crate::adapters::store::rollouts::{metric_point, parse_record, ts};

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Postgres(format!("encoding: {e}")))
}

/// One audit row, in the transaction of what it records.
struct Event<'a> {
    rollout_id: &'a str,
    at: DateTime<Utc>,
    actor: String,
    cause: String,
    input: Option<String>,
    outcome: Outcome,
    note: String,
    effects: &'a [Effect],
    phase: &'a str,
}

fn insert_event(tx: &mut postgres::Transaction<'_>, e: &Event<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO rollout_events \
         (rollout_id, at, actor, cause, input, decision, note, effects, phase) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &e.rollout_id,
            &ts(e.at),
            &e.actor,
            &e.cause,
            &e.input,
            &e.outcome.as_str(),
            &e.note,
            &json(&e.effects)?,
            &e.phase,
        ],
    )
    .map(drop)
    .map_err(pg_err)
}

fn records(rows: &[postgres::Row]) -> Result<Vec<Rollout>, RolloutStoreError> {
    rows.iter()
        .map(|r| {
            let id: String = r.try_get(0).map_err(pg_err)?;
            let json: String = r.try_get(1).map_err(pg_err)?;
            parse_record(&id, &json)
        })
        .collect()
}

pub fn create(pg: &Postgres, r: &Rollout, actor: &str) -> Result<(), RolloutStoreError> {
    let (r, actor) = (r.clone(), actor.to_string());
    let record = json(&r)?;
    pg.run(move |c| {
        let mut tx = c.transaction().map_err(pg_err)?;
        let inserted = tx.execute(
            "INSERT INTO rollouts \
             (id, service, environment, phase, live, record, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &r.deploy_id,
                &r.service(),
                &r.environment(),
                &r.phase().name(),
                &r.is_live(),
                &record,
                &ts(r.created_at),
                &ts(r.updated_at),
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                // Either the id exists or another rollout is live: name the live one.
                let existing: Option<String> = c
                    .query_opt(
                        "SELECT id FROM rollouts WHERE service = $1 AND environment = $2 AND live",
                        &[&r.service(), &r.environment()],
                    )
                    .map_err(pg_err)?
                    .map(|row| row.try_get(0))
                    .transpose()
                    .map_err(pg_err)?;
                return Ok(Err(RolloutStoreError::LiveConflict {
                    id: r.deploy_id.clone(),
                    service: r.service().to_string(),
                    environment: r.environment().to_string(),
                    existing: existing.unwrap_or_else(|| format!("{} itself", r.deploy_id)),
                }));
            }
            Err(e) => return Err(pg_err(e)),
        }
        insert_event(
            &mut tx,
            &Event {
                rollout_id: &r.deploy_id,
                at: r.created_at,
                actor,
                cause: "created".into(),
                input: None,
                outcome: Outcome::Applied,
                note: format!(
                    "rollout of {} to {}/{} created",
                    r.image_tag(),
                    r.service(),
                    r.environment()
                ),
                effects: &[],
                phase: r.phase().name(),
            },
        )?;
        tx.commit().map_err(pg_err)?;
        Ok(Ok(()))
    })?
}

/// Saves a transition over `before`; with `fence`, only while that lease's token is the
/// rollout's current one (the lease row is locked for the save, so a takeover waits for it or
/// it sees the takeover).
pub fn save(
    pg: &Postgres,
    before: &Rollout,
    input: &Input,
    t: &Transition,
    fence: Option<&Lease>,
) -> Result<(), RolloutStoreError> {
    if t.outcome == Outcome::Unchanged && *input == Input::Tick && fence.is_none() {
        return Ok(());
    }
    let id = before.deploy_id.clone();
    let (before_json, next_json) = (json(before)?, json(&t.next)?);
    let (phase, live, updated_at) = (
        t.next.phase().name(),
        t.next.is_live(),
        ts(t.next.updated_at),
    );
    let (input, t, fence) = (input.clone(), t.clone(), fence.cloned());
    let input_json = json(&input)?;
    pg.run(move |c| {
        let mut tx = c.transaction().map_err(pg_err)?;
        if let Some(mine) = &fence {
            let current = lease_row(&mut tx, &id, "FOR SHARE")?;
            if !lease::still_holds(current.as_ref(), mine) {
                return Ok(Err(RolloutStoreError::Fenced {
                    id: id.clone(),
                    fence: mine.fence,
                }));
            }
            if t.outcome == Outcome::Unchanged && input == Input::Tick {
                return Ok(Ok(()));
            }
        }
        let n = tx
            .execute(
                "UPDATE rollouts SET phase = $2, live = $3, record = $4, updated_at = $5 \
                 WHERE id = $1 AND record = $6",
                &[&id, &phase, &live, &next_json, &updated_at, &before_json],
            )
            .map_err(pg_err)?;
        if n == 0 {
            let exists = tx
                .query_opt("SELECT 1 FROM rollouts WHERE id = $1", &[&id])
                .map_err(pg_err)?
                .is_some();
            return Ok(Err(if exists {
                RolloutStoreError::Conflict { id: id.clone() }
            } else {
                RolloutStoreError::NotFound { id: id.clone() }
            }));
        }
        insert_event(
            &mut tx,
            &Event {
                rollout_id: &id,
                at: t.at,
                actor: input.actor(),
                cause: input.name().to_string(),
                input: Some(input_json),
                outcome: t.outcome,
                note: t.note.clone(),
                effects: &t.effects,
                phase,
            },
        )?;
        tx.commit().map_err(pg_err)?;
        Ok(Ok(()))
    })?
}

fn lease_row(
    tx: &mut postgres::Transaction<'_>,
    deploy_id: &str,
    lock: &str,
) -> Result<Option<Lease>, StoreError> {
    tx.query_opt(
        &format!(
            "SELECT holder, fence, expires_at FROM rollout_leases WHERE deploy_id = $1 {lock}"
        ),
        &[&deploy_id],
    )
    .map_err(pg_err)?
    .map(|r| {
        Ok(Lease {
            deploy_id: deploy_id.to_string(),
            holder: r.try_get(0).map_err(pg_err)?,
            fence: r.try_get(1).map_err(pg_err)?,
            expires_at: r.try_get(2).map_err(pg_err)?,
        })
    })
    .transpose()
}

/// Takes or renews the lease of `deploy_id` for `holder` until `now + ttl` (Unix ms), as
/// `lease::claim` decides; two replicas asking at once are serialized by the lease row's lock.
pub fn acquire_lease(
    pg: &Postgres,
    deploy_id: &str,
    holder: &str,
    now: i64,
    ttl: i64,
) -> Result<Acquire, RolloutStoreError> {
    let (id, holder) = (deploy_id.to_string(), holder.to_string());
    pg.run(move |c| {
        // Twice at most: the first time, a replica asking at the same moment may insert the
        // first lease between our read and our insert; the second read then sees it.
        for _ in 0..2 {
            let mut tx = c.transaction().map_err(pg_err)?;
            let current = lease_row(&mut tx, &id, "FOR UPDATE")?;
            let fence = match lease::claim(current.as_ref(), &holder, now) {
                Claim::Held { holder, until } => return Ok(Ok(Acquire::Held { holder, until })),
                Claim::Renew { fence } | Claim::Take { fence } => fence,
            };
            let expires_at = now.saturating_add(ttl);
            let n = if current.is_some() {
                tx.execute(
                    "UPDATE rollout_leases SET holder = $2, fence = $3, expires_at = $4 \
                     WHERE deploy_id = $1",
                    &[&id, &holder, &fence, &expires_at],
                )
                .map_err(pg_err)?
            } else {
                match tx.execute(
                    "INSERT INTO rollout_leases (deploy_id, holder, fence, expires_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (deploy_id) DO NOTHING",
                    &[&id, &holder, &fence, &expires_at],
                ) {
                    Ok(n) => n,
                    Err(e) if is_foreign_key_violation(&e) => {
                        return Ok(Err(RolloutStoreError::NotFound { id: id.clone() }));
                    }
                    Err(e) => return Err(pg_err(e)),
                }
            };
            if n == 1 {
                tx.commit().map_err(pg_err)?;
                return Ok(Ok(Acquire::Granted(Lease {
                    deploy_id: id.clone(),
                    holder: holder.clone(),
                    fence,
                    expires_at,
                })));
            }
        }
        Err(StoreError::Postgres(format!(
            "taking the lease of rollout {id}: it changed twice while asked"
        )))
    })?
}

/// The current lease of a rollout, if any.
pub fn lease_of(pg: &Postgres, deploy_id: &str) -> Result<Option<Lease>, RolloutStoreError> {
    let id = deploy_id.to_string();
    Ok(pg.run(move |c| {
        let mut tx = c.transaction().map_err(pg_err)?;
        lease_row(&mut tx, &id, "")
    })?)
}

pub fn live(pg: &Postgres) -> Result<Vec<Rollout>, RolloutStoreError> {
    let rows = pg.run(|c| {
        c.query(
            "SELECT id, record FROM rollouts WHERE live ORDER BY created_at, id",
            &[],
        )
        .map_err(pg_err)
    })?;
    records(&rows)
}

pub fn get(pg: &Postgres, id: &str) -> Result<Option<Rollout>, RolloutStoreError> {
    let id = id.to_string();
    let row = pg.run({
        let id = id.clone();
        move |c| {
            c.query_opt("SELECT record FROM rollouts WHERE id = $1", &[&id])
                .map_err(pg_err)
        }
    })?;
    row.map(|r| {
        let json: String = r.try_get(0).map_err(pg_err)?;
        parse_record(&id, &json)
    })
    .transpose()
}

pub fn recent(
    pg: &Postgres,
    service: Option<&str>,
    limit: usize,
) -> Result<Vec<Rollout>, RolloutStoreError> {
    let service = service.map(str::to_string);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = pg.run(move |c| {
        c.query(
            "SELECT id, record FROM rollouts WHERE ($1::TEXT IS NULL OR service = $1) \
             ORDER BY updated_at DESC, id LIMIT $2",
            &[&service, &limit],
        )
        .map_err(pg_err)
    })?;
    records(&rows)
}

pub fn history(pg: &Postgres, service: &str) -> Result<Vec<AuditEvent>, RolloutStoreError> {
    let service = service.to_string();
    let rows = pg.run(move |c| {
        c.query(
            "SELECT e.seq, e.rollout_id, e.at, e.actor, e.cause, e.input, e.decision, \
             e.note, e.effects, e.phase \
             FROM rollout_events e JOIN rollouts r ON r.id = e.rollout_id \
             WHERE r.service = $1 ORDER BY e.seq",
            &[&service],
        )
        .map_err(pg_err)
    })?;
    rows.iter()
        .map(|r| {
            let get =
                |i| -> Result<String, RolloutStoreError> { Ok(r.try_get(i).map_err(pg_err)?) };
            let seq: i64 = r.try_get(0).map_err(pg_err)?;
            let rollout_id = get(1)?;
            let input: Option<String> = r.try_get(5).map_err(pg_err)?;
            let corrupt = |message: String| RolloutStoreError::Corrupt {
                id: format!("{rollout_id} (event {seq})"),
                message,
            };
            Ok(AuditEvent {
                at: DateTime::parse_from_rfc3339(&get(2)?)
                    .map_err(|e| corrupt(e.to_string()))?
                    .with_timezone(&Utc),
                input: input
                    .map(|j| serde_json::from_str(&j))
                    .transpose()
                    .map_err(|e| corrupt(e.to_string()))?,
                effects: serde_json::from_str(&get(8)?).map_err(|e| corrupt(e.to_string()))?,
                seq,
                actor: get(3)?,
                cause: get(4)?,
                decision: get(6)?,
                note: get(7)?,
                phase: get(9)?,
                rollout_id,
            })
        })
        .collect()
}

pub fn record_metrics(
    pg: &Postgres,
    deploy_id: &str,
    points: &[MetricPoint],
) -> Result<(), RolloutStoreError> {
    let (id, points) = (deploy_id.to_string(), points.to_vec());
    pg.run(move |c| {
        let mut tx = c.transaction().map_err(pg_err)?;
        let stmt = tx
            .prepare(
                "INSERT INTO rollout_metrics (deploy_id, at, weight, metric, canary, baseline) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (deploy_id, at, metric) DO UPDATE SET \
                 weight = excluded.weight, \
                 canary = coalesce(excluded.canary, rollout_metrics.canary), \
                 baseline = coalesce(excluded.baseline, rollout_metrics.baseline)",
            )
            .map_err(pg_err)?;
        for p in &points {
            // No sample is NULL, never NaN; infinities are not samples either.
            let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
            let inserted = tx.execute(
                &stmt,
                &[
                    &id,
                    &ts(p.at),
                    &i64::from(p.weight.percent()),
                    &p.metric,
                    &finite(p.canary),
                    &finite(p.baseline),
                ],
            );
            match inserted {
                Ok(_) => {}
                // The only constraint an upsert can still break is the rollout's foreign key.
                Err(e) if is_foreign_key_violation(&e) => {
                    return Ok(Err(RolloutStoreError::NotFound { id: id.clone() }));
                }
                Err(e) => return Err(pg_err(e)),
            }
        }
        tx.commit().map_err(pg_err)?;
        Ok(Ok(()))
    })?
}

pub fn metrics(pg: &Postgres, deploy_id: &str) -> Result<Vec<MetricPoint>, RolloutStoreError> {
    let id = deploy_id.to_string();
    let rows = pg.run({
        let id = id.clone();
        move |c| {
            c.query(
                "SELECT at, weight, metric, canary, baseline FROM rollout_metrics \
                 WHERE deploy_id = $1 ORDER BY at, metric",
                &[&id],
            )
            .map_err(pg_err)
        }
    })?;
    rows.iter()
        .map(|r| {
            let at: String = r.try_get(0).map_err(pg_err)?;
            metric_point(
                &id,
                &at,
                r.try_get(1).map_err(pg_err)?,
                r.try_get(2).map_err(pg_err)?,
                r.try_get(3).map_err(pg_err)?,
                r.try_get(4).map_err(pg_err)?,
            )
        })
        .collect()
}
