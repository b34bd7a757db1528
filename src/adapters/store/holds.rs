//! Held services (table `service_holds`, migration `0004_rollout_shell.sql`): a rollback or an
//! emergency `/hold` holds a service in an environment, and nothing starts there until a human
//! releases it. Plain reads and writes; what a hold means is `rollout::admission`'s.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};

use crate::adapters::store::{Store, StoreError};
use deploybot_core::rollout::admission::HeldService;

/// Holds `service` in `environment`; a second hold keeps the first one's reason.
pub fn hold(
    store: &Store,
    service: &str,
    environment: &str,
    deploy_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::hold(pg, service, environment, deploy_id, reason, now);
    }
    store.with_conn(|c| {
        c.execute(
            "INSERT OR IGNORE INTO service_holds (service, environment, deploy_id, reason, since) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                service,
                environment,
                deploy_id,
                reason,
                now.to_rfc3339_opts(SecondsFormat::Secs, true)
            ],
        )
        .map(drop)
    })
}

/// Releases the hold on `service` in `environment`; true when there was one.
pub fn release(store: &Store, service: &str, environment: &str) -> Result<bool, StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::release(pg, service, environment);
    }
    store.with_conn(|c| {
        c.execute(
            "DELETE FROM service_holds WHERE service = ?1 AND environment = ?2",
            params![service, environment],
        )
        .map(|n| n > 0)
    })
}

pub fn hold_of(
    store: &Store,
    service: &str,
    environment: &str,
) -> Result<Option<HeldService>, StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::hold_of(pg, service, environment);
    }
    store.with_conn(|c| {
        c.query_row(
            "SELECT service, environment, deploy_id, reason, since FROM service_holds \
             WHERE service = ?1 AND environment = ?2",
            params![service, environment],
            |r| {
                Ok(HeldService {
                    service: r.get(0)?,
                    environment: r.get(1)?,
                    deploy_id: r.get(2)?,
                    reason: r.get(3)?,
                    since: r.get(4)?,
                })
            },
        )
        .optional()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_round_trip_and_the_first_reason_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let now = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        assert_eq!(hold_of(&store, "checkout", "staging").unwrap(), None);
        hold(&store, "checkout", "staging", "d-1", "error rate", now).unwrap();
        hold(&store, "checkout", "staging", "d-2", "later", now).unwrap();
        let h = hold_of(&store, "checkout", "staging").unwrap().unwrap();
        assert_eq!(
            (h.deploy_id.as_str(), h.reason.as_str()),
            ("d-1", "error rate")
        );
        assert_eq!(hold_of(&store, "checkout", "production").unwrap(), None);
        assert!(release(&store, "checkout", "staging").unwrap());
        assert!(!release(&store, "checkout", "staging").unwrap());
    }
}
