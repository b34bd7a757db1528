//! Where assessments are kept: the `assessments` table (migration 0002) behind a small port, so
//! that a redelivered event for the same head SHA and inputs reuses the stored result instead of
//! asking the model again, and later steps (rollout) can read what was decided.

use rusqlite::{OptionalExtension, params};

use crate::adapters::clock::SystemClock;
use crate::adapters::store::{Store, StoreError};
use deploybot_core::clock::Clock as _;
use deploybot_core::risk::Assessment;

/// What identifies one assessment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentKey {
    pub repository: String,
    pub pr_number: u64,
    pub head_sha: String,
    pub inputs_digest: String,
}

/// The assessment store port.
pub trait AssessmentStore: Send + Sync {
    fn find(&self, key: &AssessmentKey) -> Result<Option<Assessment>, StoreError>;
    /// Stores (or replaces) the assessment for `key`.
    fn save(&self, key: &AssessmentKey, assessment: &Assessment) -> Result<(), StoreError>;
    /// The most recent assessment of a PR with its head SHA.
    fn latest(
        &self,
        repository: &str,
        pr_number: u64,
    ) -> Result<Option<(String, Assessment)>, StoreError>;
}

fn decode(json: String) -> Result<Assessment, rusqlite::Error> {
    serde_json::from_str(&json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl AssessmentStore for Store {
    fn find(&self, key: &AssessmentKey) -> Result<Option<Assessment>, StoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::records::find_assessment(pg, key);
        }
        let json: Option<String> = self.with_conn(|c| {
            c.query_row(
                "SELECT result FROM assessments WHERE repository = ?1 AND pr_number = ?2 \
                 AND head_sha = ?3 AND inputs_digest = ?4",
                params![
                    key.repository,
                    key.pr_number as i64,
                    key.head_sha,
                    key.inputs_digest
                ],
                |r| r.get(0),
            )
            .optional()
        })?;
        match json {
            Some(j) => Ok(Some(decode(j)?)),
            None => Ok(None),
        }
    }

    fn save(&self, key: &AssessmentKey, a: &Assessment) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::records::save_assessment(pg, key, a);
        }
        let json = serde_json::to_string(a).map_err(|e| {
            StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
        })?;
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO assessments (repository, pr_number, head_sha, inputs_digest, result, \
                 risk_score, model, prompt_version, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (repository, pr_number, head_sha, inputs_digest) DO UPDATE SET \
                 result = excluded.result, risk_score = excluded.risk_score, \
                 model = excluded.model, prompt_version = excluded.prompt_version, \
                 created_at = excluded.created_at",
                params![
                    key.repository,
                    key.pr_number as i64,
                    key.head_sha,
                    key.inputs_digest,
                    json,
                    a.risk_score,
                    a.model,
                    a.prompt_version,
                    SystemClock.now().to_rfc3339(),
                ],
            )
            .map(|_| ())
        })
    }

    fn latest(
        &self,
        repository: &str,
        pr_number: u64,
    ) -> Result<Option<(String, Assessment)>, StoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::records::latest_assessment(pg, repository, pr_number);
        }
        let row: Option<(String, String)> = self.with_conn(|c| {
            c.query_row(
                "SELECT head_sha, result FROM assessments WHERE repository = ?1 AND pr_number = ?2 \
                 ORDER BY created_at DESC, id DESC LIMIT 1",
                params![repository, pr_number as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        match row {
            Some((sha, j)) => Ok(Some((sha, decode(j)?))),
            None => Ok(None),
        }
    }
}
