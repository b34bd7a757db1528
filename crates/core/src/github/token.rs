//! Who deploybot is to GitHub: the [`TokenSource`] port every GitHub call and every git fetch or
//! push over https asks for a current token, and the two decisions about GitHub App tokens that
//! need no I/O: whether a cached installation token is still good to use ([`freshness`]) and the
//! claims of the App's JWT ([`AppClaims::at`]).
//!
//! A personal token is one fixed (or file-rotated) value; a GitHub App has one installation token
//! per installation (organisation), minted with a JWT and expiring after an hour. Callers do not
//! know which: they ask for a token for the repository they are about to touch, and say so when
//! GitHub refused it (401) so that the next ask mints a fresh one instead of repeating it.

use chrono::{DateTime, Utc};

use crate::failure::PortFuture;
use crate::github::RepoName;
use crate::secret::Secret;

/// What a call touches. A GitHub App is installed once per account (organisation or user), so
/// the account picks the installation; a repository also says where to look it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Repo(&'a RepoName),
    /// An organisation's own resources (its teams).
    Account(&'a str),
}

impl Scope<'_> {
    pub fn account(&self) -> &str {
        match self {
            Scope::Repo(r) => &r.owner,
            Scope::Account(a) => a,
        }
    }
}

/// The token for calls about one repository or account.
pub trait TokenSource: Send + Sync {
    /// A token that is current now for `scope`. `Ok(None)` means unauthenticated: no
    /// credentials are configured.
    fn token<'a>(&'a self, scope: Scope<'a>) -> PortFuture<'a, Option<Secret>>;

    /// GitHub refused `token` (401) for `scope`: forget it, so the next [`TokenSource::token`]
    /// mints (or re-reads) a fresh one rather than answering the refused one again.
    fn refused(&self, scope: Scope<'_>, token: &Secret);

    /// A signed delivery said that `installation` serves `repo`, which saves asking GitHub.
    fn learn(&self, repo: &RepoName, installation: u64);
}

/// Whether a cached token can be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Use,
    /// Too close to (or past) its expiry: mint a new one first.
    Refresh,
}

/// The most a token is refreshed ahead of its expiry (GitHub's installation tokens live an hour).
pub const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// A token minted at `minted` and expiring at `expires` is refreshed once less than the margin
/// is left: five minutes, or a quarter of its lifetime when that is shorter (so that a token
/// living seconds, as GitHub Enterprise can be configured to issue and as tests do, is still
/// used for most of its life instead of being re-minted on every call). The margin covers the
/// time one call or one push takes, so a token is never handed out to expire mid-request.
pub fn freshness(minted: DateTime<Utc>, expires: DateTime<Utc>, now: DateTime<Utc>) -> Freshness {
    let lifetime = expires - minted;
    let margin = REFRESH_MARGIN.min(lifetime / 4);
    if expires - now > margin {
        Freshness::Use
    } else {
        Freshness::Refresh
    }
}

/// The claims of a GitHub App's JWT (RS256): issued a minute in the past, so that a GitHub
/// clock running behind ours still accepts it, and expiring within GitHub's ten-minute limit
/// (nine minutes after it was issued by our clock, ten after its `iat`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppClaims {
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// The App's id.
    pub iss: String,
}

impl AppClaims {
    pub fn at(app_id: u64, now: DateTime<Utc>) -> AppClaims {
        let now = now.timestamp();
        AppClaims {
            iat: now - 60,
            exp: now + 9 * 60,
            iss: app_id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn refresh_timing() {
        // (row, minted, expires, now, expected), seconds from a fixed instant.
        let rows = [
            ("fresh hour-long token", 0, 3600, 10, Freshness::Use),
            ("six minutes left", 0, 3600, 3240, Freshness::Use),
            ("exactly the margin left", 0, 3600, 3300, Freshness::Refresh),
            ("four minutes left", 0, 3600, 3360, Freshness::Refresh),
            ("expired", 0, 3600, 3700, Freshness::Refresh),
            ("8 s token, just minted", 0, 8, 0, Freshness::Use),
            ("8 s token, 3 s left", 0, 8, 5, Freshness::Use),
            (
                "8 s token, 2 s left (a quarter)",
                0,
                8,
                6,
                Freshness::Refresh,
            ),
            ("clock behind the mint", 100, 3700, 0, Freshness::Use),
        ];
        for (row, minted, expires, now, expected) in rows {
            check(row, freshness(at(minted), at(expires), at(now)), expected);
        }
    }

    fn check(row: &str, got: Freshness, expected: Freshness) {
        assert_eq!(got, expected, "row {row:?}");
    }

    #[test]
    fn jwt_is_issued_a_minute_back_and_expires_within_ten() {
        let claims = AppClaims::at(42, at(0));
        assert_eq!(claims.iss, "42");
        assert_eq!(claims.iat, at(-60).timestamp());
        assert!(claims.exp - claims.iat <= 600, "{claims:?}");
        assert!(claims.exp > at(0).timestamp() + 60, "{claims:?}");
    }
}
