//! Deliveries on PostgreSQL: the durable queue every replica writes before its 202
//! (de-duplicated by delivery id, `ON CONFLICT DO NOTHING`), claims that hand each delivery to
//! one replica at a time (`FOR UPDATE SKIP LOCKED`, with a lease after which an abandoned claim
//! returns to the queue), and the maintenance (retention, dead letters, the readiness write).

use chrono::{DateTime, Utc};
use deploybot_core::clock::Clock as _;
use deploybot_core::config::Retention;
use deploybot_core::webhook::lane::Lane;

use super::{Postgres, pg_err};
use crate::adapters::clock::SystemClock;
use crate::adapters::store::maintenance::{DeadLetter, Pruned, Replay, Sizes};
use crate::adapters::store::{
    Claimed, DeliveryStatus, Inserted, NewDelivery, QueuedDelivery, StoreError, StoredDelivery,
};

const SELECT_DELIVERY: &str = "SELECT seq, delivery_id, event, action, repository, received_at, \
     payload, status, attempts, detail FROM deliveries";

fn row_to_delivery(r: &postgres::Row) -> Result<StoredDelivery, StoreError> {
    let status: String = r.try_get(7).map_err(pg_err)?;
    Ok(StoredDelivery {
        seq: r.try_get(0).map_err(pg_err)?,
        delivery_id: r.try_get(1).map_err(pg_err)?,
        event: r.try_get(2).map_err(pg_err)?,
        action: r.try_get(3).map_err(pg_err)?,
        repository: r.try_get(4).map_err(pg_err)?,
        received_at: r.try_get(5).map_err(pg_err)?,
        payload: r.try_get(6).map_err(pg_err)?,
        status: DeliveryStatus::parse(&status),
        attempts: r.try_get(8).map_err(pg_err)?,
        detail: r.try_get(9).map_err(pg_err)?,
    })
}

fn row_to_queued(r: &postgres::Row) -> Result<QueuedDelivery, StoreError> {
    let lane: String = r.try_get(3).map_err(pg_err)?;
    let bytes: i64 = r.try_get(7).map_err(pg_err)?;
    Ok(QueuedDelivery {
        seq: r.try_get(0).map_err(pg_err)?,
        delivery_id: r.try_get(1).map_err(pg_err)?,
        event: r.try_get(2).map_err(pg_err)?,
        lane: Lane::parse(&lane),
        key: r.try_get(4).map_err(pg_err)?,
        attempts: r.try_get(5).map_err(pg_err)?,
        not_before: r.try_get(6).map_err(pg_err)?,
        bytes: usize::try_from(bytes).unwrap_or(0),
    })
}

/// Stores a delivery; committed (PostgreSQL's `synchronous_commit`) before it answers, so the
/// 202 that follows promises nothing the database does not hold. A delivery id stored before,
/// by this replica or another, answers `Duplicate`.
pub async fn enqueue(pg: &Postgres, d: NewDelivery) -> Result<Inserted, StoreError> {
    pg.run_async(move |c| {
        let n = c
            .execute(
                "INSERT INTO deliveries \
                 (delivery_id, event, action, repository, received_at, payload, status, detail, \
                  lane, lane_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (delivery_id) DO NOTHING",
                &[
                    &d.delivery_id,
                    &d.event,
                    &d.action,
                    &d.repository,
                    &d.received_at,
                    &d.payload,
                    &d.status.as_str(),
                    &d.detail,
                    &d.placement.lane.as_str(),
                    &d.placement.key,
                ],
            )
            .map_err(pg_err)?;
        Ok(if n == 1 {
            Inserted::New
        } else {
            Inserted::Duplicate
        })
    })
    .await
}

pub fn queued(pg: &Postgres, limit: usize) -> Result<Vec<QueuedDelivery>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    pg.run(move |c| {
        c.query(
            "SELECT seq, delivery_id, event, lane, lane_key, attempts, not_before, \
             octet_length(payload)::BIGINT FROM deliveries WHERE status = 'pending' \
             ORDER BY seq LIMIT $1",
            &[&limit],
        )
        .map_err(pg_err)?
        .iter()
        .map(row_to_queued)
        .collect()
    })
}

/// Claims up to `limit` pending deliveries that are due (`not_before` passed) and not claimed by
/// a live claim, oldest first, for `owner` until `now_ms + lease_ms`. Rows another replica is
/// claiming at this moment are skipped, not waited for (`SKIP LOCKED`), so no delivery is ever
/// handed to two replicas while a claim holds; a claim that was not finished within its lease
/// is claimable again.
pub fn claim(
    pg: &Postgres,
    owner: &str,
    limit: usize,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Vec<QueuedDelivery>, StoreError> {
    let owner = owner.to_string();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let until = now_ms.saturating_add(lease_ms);
    pg.run(move |c| {
        let mut rows = c
            .query(
                "UPDATE deliveries d SET claimed_by = $1, claimed_until = $2 \
                 FROM (SELECT seq FROM deliveries \
                       WHERE status = 'pending' AND not_before <= $3 AND claimed_until <= $3 \
                       ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) due \
                 WHERE d.seq = due.seq \
                 RETURNING d.seq, d.delivery_id, d.event, d.lane, d.lane_key, d.attempts, \
                 d.not_before, octet_length(d.payload)::BIGINT",
                &[&owner, &until, &now_ms, &limit],
            )
            .map_err(pg_err)?
            .iter()
            .map(row_to_queued)
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by_key(|q| q.seq);
        Ok(rows)
    })
}

/// Claims one delivery for this replica until `now + CLAIM_LEASE_MS`: when it is pending and
/// its claim (if any) ran out or is already this replica's (a restarted process takes back what
/// it held). The row's lock makes two replicas asking at once one after the other.
pub fn claim_one(pg: &Postgres, delivery_id: &str, now: i64) -> Result<Claimed, StoreError> {
    let (id, owner) = (delivery_id.to_string(), pg.replica().to_string());
    let until = now.saturating_add(super::CLAIM_LEASE_MS);
    pg.run(move |c| {
        let n = c
            .execute(
                "UPDATE deliveries SET claimed_by = $2, claimed_until = $4 \
                 WHERE delivery_id = $1 AND status = 'pending' \
                 AND (claimed_until <= $3 OR claimed_by = $2)",
                &[&id, &owner, &now, &until],
            )
            .map_err(pg_err)?;
        if n == 1 {
            return Ok(Claimed::Yes);
        }
        let row = c
            .query_opt(
                "SELECT status, claimed_until FROM deliveries WHERE delivery_id = $1",
                &[&id],
            )
            .map_err(pg_err)?;
        Ok(match row {
            Some(r) if r.try_get::<_, String>(0).map_err(pg_err)? == "pending" => {
                Claimed::Elsewhere {
                    until: r.try_get(1).map_err(pg_err)?,
                }
            }
            _ => Claimed::Gone,
        })
    })
}

/// Gives a claim back before its lease ends (the replica will not process it after all).
pub fn release_claim(pg: &Postgres, owner: &str, delivery_id: &str) -> Result<bool, StoreError> {
    let (owner, id) = (owner.to_string(), delivery_id.to_string());
    pg.run(move |c| {
        c.execute(
            "UPDATE deliveries SET claimed_by = NULL, claimed_until = 0 \
             WHERE delivery_id = $1 AND claimed_by = $2",
            &[&id, &owner],
        )
        .map(|n| n == 1)
        .map_err(pg_err)
    })
}

pub fn load(pg: &Postgres, seq: i64) -> Result<Option<StoredDelivery>, StoreError> {
    pg.run(move |c| {
        c.query_opt(&format!("{SELECT_DELIVERY} WHERE seq = $1"), &[&seq])
            .map_err(pg_err)?
            .as_ref()
            .map(row_to_delivery)
            .transpose()
    })
}

pub fn delivery(pg: &Postgres, delivery_id: &str) -> Result<Option<StoredDelivery>, StoreError> {
    let id = delivery_id.to_string();
    pg.run(move |c| {
        c.query_opt(&format!("{SELECT_DELIVERY} WHERE delivery_id = $1"), &[&id])
            .map_err(pg_err)?
            .as_ref()
            .map(row_to_delivery)
            .transpose()
    })
}

pub fn count_by_status(pg: &Postgres, status: DeliveryStatus) -> Result<u64, StoreError> {
    pg.run(move |c| {
        let n: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM deliveries WHERE status = $1",
                &[&status.as_str()],
            )
            .map_err(pg_err)?
            .try_get(0)
            .map_err(pg_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    })
}

/// Records the outcome of an attempt; the claim ends with it.
pub fn finish(
    pg: &Postgres,
    delivery_id: &str,
    status: DeliveryStatus,
    detail: &str,
) -> Result<(), StoreError> {
    let (id, detail) = (delivery_id.to_string(), detail.to_string());
    let at = SystemClock.now().to_rfc3339();
    pg.run(move |c| {
        c.execute(
            "UPDATE deliveries SET status = $2, detail = $3, attempts = attempts + 1, \
             processed_at = $4, claimed_by = NULL, claimed_until = 0 WHERE delivery_id = $1",
            &[&id, &status.as_str(), &detail, &at],
        )
        .map(drop)
        .map_err(pg_err)
    })
}

/// Counts a failed attempt; the claim ends with it, so whichever replica is free when
/// `not_before` comes takes the retry.
pub fn record_attempt(
    pg: &Postgres,
    delivery_id: &str,
    detail: &str,
    not_before: i64,
) -> Result<i64, StoreError> {
    let (id, detail) = (delivery_id.to_string(), detail.to_string());
    pg.run(move |c| {
        c.query_opt(
            "UPDATE deliveries SET attempts = attempts + 1, detail = $2, not_before = $3, \
             claimed_by = NULL, claimed_until = 0 WHERE delivery_id = $1 RETURNING attempts",
            &[&id, &detail, &not_before],
        )
        .map_err(pg_err)?
        // SQLite's `query_row` fails the same way on an unknown id.
        .ok_or_else(|| StoreError::Postgres(format!("no delivery {id}")))?
        .try_get(0)
        .map_err(pg_err)
    })
}

pub fn prune(
    pg: &Postgres,
    now: DateTime<Utc>,
    retention: &Retention,
) -> Result<Pruned, StoreError> {
    let before = |d: deploybot_core::duration::PromDuration| {
        let age = chrono::Duration::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        (now - age).to_rfc3339()
    };
    let (ignored, deliveries, payloads) = (
        before(retention.ignored),
        before(retention.deliveries),
        before(retention.payloads),
    );
    pg.run(move |c| {
        let mut tx = c.transaction().map_err(pg_err)?;
        let ignored = tx
            .execute(
                "DELETE FROM deliveries WHERE status = 'ignored' AND received_at < $1",
                &[&ignored],
            )
            .map_err(pg_err)?;
        let deliveries = tx
            .execute(
                "DELETE FROM deliveries WHERE status IN ('done', 'failed') AND received_at < $1",
                &[&deliveries],
            )
            .map_err(pg_err)?;
        let payloads = tx
            .execute(
                "UPDATE deliveries SET payload = ''::BYTEA \
                 WHERE status = 'done' AND received_at < $1 AND octet_length(payload) > 0",
                &[&payloads],
            )
            .map_err(pg_err)?;
        tx.commit().map_err(pg_err)?;
        Ok(Pruned {
            payloads,
            ignored,
            deliveries,
        })
    })
}

pub fn dead_letters(pg: &Postgres, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    pg.run(move |c| {
        c.query(
            "SELECT delivery_id, event, action, repository, received_at, attempts, detail, \
             octet_length(payload)::BIGINT FROM deliveries WHERE status = 'failed' \
             ORDER BY seq LIMIT $1",
            &[&limit],
        )
        .map_err(pg_err)?
        .iter()
        .map(|r| {
            let bytes: i64 = r.try_get(7).map_err(pg_err)?;
            Ok(DeadLetter {
                delivery_id: r.try_get(0).map_err(pg_err)?,
                event: r.try_get(1).map_err(pg_err)?,
                action: r.try_get(2).map_err(pg_err)?,
                repository: r.try_get(3).map_err(pg_err)?,
                received_at: r.try_get(4).map_err(pg_err)?,
                attempts: r.try_get(5).map_err(pg_err)?,
                detail: r.try_get(6).map_err(pg_err)?,
                bytes: u64::try_from(bytes).unwrap_or(0),
            })
        })
        .collect()
    })
}

pub fn replay(pg: &Postgres, delivery_id: &str) -> Result<Replay, StoreError> {
    let id = delivery_id.to_string();
    pg.run(move |c| {
        let mut tx = c.transaction().map_err(pg_err)?;
        let row = tx
            .query_opt(
                "SELECT status, octet_length(payload)::BIGINT FROM deliveries \
                 WHERE delivery_id = $1 FOR UPDATE",
                &[&id],
            )
            .map_err(pg_err)?;
        let Some(row) = row else {
            return Ok(Replay::Unknown);
        };
        let status = DeliveryStatus::parse(&row.try_get::<_, String>(0).map_err(pg_err)?);
        let bytes: i64 = row.try_get(1).map_err(pg_err)?;
        if status != DeliveryStatus::Failed {
            return Ok(Replay::NotFailed(status));
        }
        if bytes == 0 {
            return Ok(Replay::NoPayload);
        }
        tx.execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, not_before = 0, \
             detail = 'replayed', processed_at = NULL, claimed_by = NULL, claimed_until = 0 \
             WHERE delivery_id = $1 AND status = 'failed'",
            &[&id],
        )
        .map_err(pg_err)?;
        tx.commit().map_err(pg_err)?;
        Ok(Replay::Requeued)
    })
}

pub fn probe_write(pg: &Postgres) -> Result<(), StoreError> {
    let at = SystemClock.now().to_rfc3339();
    pg.run_bounded(move |c| {
        c.execute(
            "INSERT INTO store_health (id, checked_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            &[&at],
        )
        .map(drop)
        .map_err(pg_err)
    })
}

/// The database's size; PostgreSQL has no log file of ours to measure.
pub fn sizes(pg: &Postgres) -> Sizes {
    let database = pg
        .run(|c| {
            let n: i64 = c
                .query_one("SELECT pg_database_size(current_database())", &[])
                .map_err(pg_err)?
                .try_get(0)
                .map_err(pg_err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .unwrap_or(0);
    Sizes { database, wal: 0 }
}
