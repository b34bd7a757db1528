//! The small records on PostgreSQL: risk assessments, held services, approval pull requests and
//! parked releases, each answering as its SQLite module does (same keys, same order, same
//! "the first reason stays" and "recorded again moves it last").

use chrono::{DateTime, SecondsFormat, Utc};
use deploybot_core::clock::Clock as _;
use deploybot_core::risk::Assessment;
use deploybot_core::rollout::admission::HeldService;

use super::{Postgres, pg_err};
use crate::adapters::clock::SystemClock;
use crate::adapters::store::StoreError;
use crate::adapters::store::approval_prs::ApprovalPr;
use crate::adapters::store::assessments::AssessmentKey;
use crate::adapters::store::parked::PendingRelease;

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Postgres(format!("encoding: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Postgres(format!("decoding {what}: {e}")))
}

fn pr_number(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn find_assessment(
    pg: &Postgres,
    key: &AssessmentKey,
) -> Result<Option<Assessment>, StoreError> {
    let key = key.clone();
    pg.run(move |c| {
        let row = c
            .query_opt(
                "SELECT result FROM assessments WHERE repository = $1 AND pr_number = $2 \
                 AND head_sha = $3 AND inputs_digest = $4",
                &[
                    &key.repository,
                    &pr_number(key.pr_number),
                    &key.head_sha,
                    &key.inputs_digest,
                ],
            )
            .map_err(pg_err)?;
        row.map(|r| decode("an assessment", &r.try_get::<_, String>(0).map_err(pg_err)?))
            .transpose()
    })
}

pub fn save_assessment(
    pg: &Postgres,
    key: &AssessmentKey,
    a: &Assessment,
) -> Result<(), StoreError> {
    let (key, result) = (key.clone(), json(a)?);
    let (score, model, prompt) = (a.risk_score, a.model.clone(), a.prompt_version.clone());
    let at = SystemClock.now().to_rfc3339();
    pg.run(move |c| {
        c.execute(
            "INSERT INTO assessments (repository, pr_number, head_sha, inputs_digest, result, \
             risk_score, model, prompt_version, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (repository, pr_number, head_sha, inputs_digest) DO UPDATE SET \
             result = excluded.result, risk_score = excluded.risk_score, \
             model = excluded.model, prompt_version = excluded.prompt_version, \
             created_at = excluded.created_at",
            &[
                &key.repository,
                &pr_number(key.pr_number),
                &key.head_sha,
                &key.inputs_digest,
                &result,
                &score,
                &model,
                &prompt,
                &at,
            ],
        )
        .map(drop)
        .map_err(pg_err)
    })
}

pub fn latest_assessment(
    pg: &Postgres,
    repository: &str,
    number: u64,
) -> Result<Option<(String, Assessment)>, StoreError> {
    let repository = repository.to_string();
    pg.run(move |c| {
        let row = c
            .query_opt(
                "SELECT head_sha, result FROM assessments WHERE repository = $1 \
                 AND pr_number = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
                &[&repository, &pr_number(number)],
            )
            .map_err(pg_err)?;
        row.map(|r| {
            let sha: String = r.try_get(0).map_err(pg_err)?;
            let result: String = r.try_get(1).map_err(pg_err)?;
            Ok((sha, decode("an assessment", &result)?))
        })
        .transpose()
    })
}

pub fn hold(
    pg: &Postgres,
    service: &str,
    environment: &str,
    deploy_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let args = [service, environment, deploy_id, reason].map(str::to_string);
    let since = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    pg.run(move |c| {
        c.execute(
            "INSERT INTO service_holds (service, environment, deploy_id, reason, since) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&args[0], &args[1], &args[2], &args[3], &since],
        )
        .map(drop)
        .map_err(pg_err)
    })
}

pub fn release(pg: &Postgres, service: &str, environment: &str) -> Result<bool, StoreError> {
    let (service, environment) = (service.to_string(), environment.to_string());
    pg.run(move |c| {
        c.execute(
            "DELETE FROM service_holds WHERE service = $1 AND environment = $2",
            &[&service, &environment],
        )
        .map(|n| n > 0)
        .map_err(pg_err)
    })
}

pub fn hold_of(
    pg: &Postgres,
    service: &str,
    environment: &str,
) -> Result<Option<HeldService>, StoreError> {
    let (service, environment) = (service.to_string(), environment.to_string());
    pg.run(move |c| {
        let row = c
            .query_opt(
                "SELECT service, environment, deploy_id, reason, since FROM service_holds \
                 WHERE service = $1 AND environment = $2",
                &[&service, &environment],
            )
            .map_err(pg_err)?;
        row.map(|r| {
            Ok(HeldService {
                service: r.try_get(0).map_err(pg_err)?,
                environment: r.try_get(1).map_err(pg_err)?,
                deploy_id: r.try_get(2).map_err(pg_err)?,
                reason: r.try_get(3).map_err(pg_err)?,
                since: r.try_get(4).map_err(pg_err)?,
            })
        })
        .transpose()
    })
}

fn row_to_pr(r: &postgres::Row) -> Result<ApprovalPr, StoreError> {
    let number: i64 = r.try_get(2).map_err(pg_err)?;
    Ok(ApprovalPr {
        deploy_id: r.try_get(0).map_err(pg_err)?,
        repo: r.try_get(1).map_err(pg_err)?,
        number: u64::try_from(number).unwrap_or(0),
        branch: r.try_get(3).map_err(pg_err)?,
    })
}

pub fn record_approval_pr(pg: &Postgres, pr: &ApprovalPr) -> Result<(), StoreError> {
    let pr = pr.clone();
    pg.run(move |c| {
        c.execute(
            "INSERT INTO approval_prs (deploy_id, repo, number, branch, closed_at) \
             VALUES ($1, $2, $3, $4, NULL) \
             ON CONFLICT (deploy_id) DO UPDATE SET repo = excluded.repo, \
             number = excluded.number, branch = excluded.branch, closed_at = NULL, \
             seq = DEFAULT",
            &[&pr.deploy_id, &pr.repo, &pr_number(pr.number), &pr.branch],
        )
        .map(drop)
        .map_err(pg_err)
    })
}

pub fn approval_pr(pg: &Postgres, deploy_id: &str) -> Result<Option<ApprovalPr>, StoreError> {
    let id = deploy_id.to_string();
    pg.run(move |c| {
        c.query_opt(
            "SELECT deploy_id, repo, number, branch FROM approval_prs WHERE deploy_id = $1",
            &[&id],
        )
        .map_err(pg_err)?
        .as_ref()
        .map(row_to_pr)
        .transpose()
    })
}

pub fn approval_pr_by_number(
    pg: &Postgres,
    repo: &str,
    number: u64,
) -> Result<Option<ApprovalPr>, StoreError> {
    let repo = repo.to_string();
    pg.run(move |c| {
        c.query_opt(
            "SELECT deploy_id, repo, number, branch FROM approval_prs \
             WHERE lower(repo) = lower($1) AND number = $2 ORDER BY seq LIMIT 1",
            &[&repo, &pr_number(number)],
        )
        .map_err(pg_err)?
        .as_ref()
        .map(row_to_pr)
        .transpose()
    })
}

pub fn mark_closed(pg: &Postgres, deploy_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
    let (id, at) = (deploy_id.to_string(), at.to_rfc3339());
    pg.run(move |c| {
        c.execute(
            "UPDATE approval_prs SET closed_at = $2 WHERE deploy_id = $1",
            &[&id, &at],
        )
        .map(drop)
        .map_err(pg_err)
    })
}

pub fn unclosed(pg: &Postgres) -> Result<Vec<ApprovalPr>, StoreError> {
    pg.run(|c| {
        c.query(
            "SELECT deploy_id, repo, number, branch FROM approval_prs \
             WHERE closed_at IS NULL ORDER BY seq",
            &[],
        )
        .map_err(pg_err)?
        .iter()
        .map(row_to_pr)
        .collect()
    })
}

pub fn park_release(
    pg: &Postgres,
    p: &PendingRelease,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sha = p.release.commit_sha.clone().unwrap_or_default();
    let (service, release, gate) = (p.release.service.clone(), json(&p.release)?, json(&p.gate)?);
    let waiting = p.waiting.clone();
    let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    pg.run(move |c| {
        c.execute(
            "INSERT INTO pending_releases (service, commit_sha, release, gate, waiting, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (service, commit_sha) DO UPDATE SET waiting = excluded.waiting",
            &[&service, &sha, &release, &gate, &waiting, &at],
        )
        .map(drop)
        .map_err(pg_err)
    })
}

pub fn parked_releases(pg: &Postgres) -> Result<Vec<PendingRelease>, StoreError> {
    pg.run(|c| {
        c.query(
            "SELECT release, gate, waiting FROM pending_releases ORDER BY created_at, seq",
            &[],
        )
        .map_err(pg_err)?
        .iter()
        .map(|r| {
            let release: String = r.try_get(0).map_err(pg_err)?;
            let gate: String = r.try_get(1).map_err(pg_err)?;
            Ok(PendingRelease {
                release: decode("a parked release", &release)?,
                gate: decode("a parked release's gate", &gate)?,
                waiting: r.try_get(2).map_err(pg_err)?,
            })
        })
        .collect()
    })
}

pub fn unpark_release(pg: &Postgres, service: &str, commit_sha: &str) -> Result<(), StoreError> {
    let (service, sha) = (service.to_string(), commit_sha.to_string());
    pg.run(move |c| {
        c.execute(
            "DELETE FROM pending_releases WHERE service = $1 AND commit_sha = $2",
            &[&service, &sha],
        )
        .map(drop)
        .map_err(pg_err)
    })
}
