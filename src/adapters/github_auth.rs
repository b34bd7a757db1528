//! Who deploybot is to GitHub: the adapters of the core's `TokenSource` port that every GitHub
//! call ([`crate::adapters::github`]) and every git fetch or push over https
//! ([`crate::adapters::gitops`]) asks for a current token.
//!
//! - [`PersonalToken`]: a token someone else made (a PAT, or an installation token refreshed
//!   from outside); a `*_file` is read again on each use, so a rotated Kubernetes secret is
//!   picked up without a restart ([`RotatingSecret`]).
//! - [`AppTokens`]: deploybot is the GitHub App. It signs a JWT with the App's private key
//!   (RS256, claims from `deploybot_core::github::token::AppClaims`), finds the installation
//!   serving a repository (from the delivery, else `GET /repos/{owner}/{repo}/installation`),
//!   mints its installation token (`POST /app/installations/{id}/access_tokens`) and caches it
//!   per installation until `freshness` says to refresh it. Several installations
//!   (organisations) are served at once.
//!
//! Why the minting is ours rather than octocrab's App support (`OctocrabBuilder::app` and
//! `Octocrab::installation`, checked against octocrab 0.54): its JWT and its token cache read
//! the wall clock themselves (`SystemTime`, `Utc::now`), so the refresh timing cannot run on a
//! virtual clock or be a pure decision of the core; its cache is per client and private, so git
//! pushes could not share it; it needs the installation id up front (no lookup by repository);
//! and its key is fixed when the client is built, so a rotated key file would need a new client.
//! The signing itself is `jsonwebtoken`, the same crate and backend octocrab already builds.
//!
//! No token, JWT or key reaches a log line or an error: errors name the App id, the
//! installation, the repository and GitHub's status and message only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use deploybot_core::clock::Clock;
use deploybot_core::failure::{Failure, PortFuture};
use deploybot_core::github::RepoName;
use deploybot_core::github::token::{AppClaims, Freshness, Scope, TokenSource, freshness};
use deploybot_core::secret::{Secret, SecretRef};
use serde::Deserialize;

use crate::adapters::secrets::Resolve as _;

/// A secret that may change under deploybot: an environment variable is read once (it cannot
/// change in a running process), a file on every use (a mounted Kubernetes secret is replaced
/// in place when it rotates). A file that cannot be read for a moment (mid-rotation) answers
/// the last value read, with a warning naming the file.
pub struct RotatingSecret {
    reference: SecretRef,
    last: Mutex<Secret>,
}

impl RotatingSecret {
    /// Reads `reference` now; fails naming it when it cannot be read.
    pub fn read(reference: SecretRef) -> Result<RotatingSecret, String> {
        let value = reference.resolve()?;
        Ok(RotatingSecret {
            reference,
            last: Mutex::new(value),
        })
    }

    /// The value now.
    pub fn current(&self) -> Secret {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let SecretRef::File(_) = self.reference {
            match self.reference.resolve() {
                Ok(v) => *last = v,
                Err(e) => tracing::warn!("{e}; using the value read before"),
            }
        }
        last.clone()
    }
}

/// No credentials: every call is anonymous (the demo, read-only use against public repos).
pub struct Unauthenticated;

impl TokenSource for Unauthenticated {
    fn token<'a>(&'a self, _: Scope<'a>) -> PortFuture<'a, Option<Secret>> {
        Box::pin(async { Ok(None) })
    }
    fn refused(&self, _: Scope<'_>, _: &Secret) {}
    fn learn(&self, _: &RepoName, _: u64) {}
}

/// A token made outside deploybot, the same for every repository.
pub struct PersonalToken(pub RotatingSecret);

impl TokenSource for PersonalToken {
    fn token<'a>(&'a self, _: Scope<'a>) -> PortFuture<'a, Option<Secret>> {
        Box::pin(async { Ok(Some(self.0.current())) })
    }
    // The file is read again on the next use anyway; an environment variable cannot change.
    fn refused(&self, _: Scope<'_>, _: &Secret) {}
    fn learn(&self, _: &RepoName, _: u64) {}
}

/// One token already in hand (tests, and the CLI's callers that pass a token).
pub struct FixedToken(pub Secret);

impl TokenSource for FixedToken {
    fn token<'a>(&'a self, _: Scope<'a>) -> PortFuture<'a, Option<Secret>> {
        Box::pin(async { Ok(Some(self.0.clone())) })
    }
    fn refused(&self, _: Scope<'_>, _: &Secret) {}
    fn learn(&self, _: &RepoName, _: u64) {}
}

/// An installation token and when it was minted and expires (by our clock and GitHub's).
#[derive(Clone)]
struct Minted {
    token: Secret,
    minted: DateTime<Utc>,
    expires: DateTime<Utc>,
}

/// deploybot as a GitHub App: installation tokens minted, cached and refreshed here.
pub struct AppTokens {
    app_id: u64,
    key: RotatingSecret,
    /// The parsed key and the PEM it was parsed from, parsed again when the file changes.
    signing: Mutex<Option<(Secret, Arc<jsonwebtoken::EncodingKey>)>>,
    api: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock + Send + Sync>,
    /// Installation by account login, lower-cased (GitHub logins are case-insensitive).
    installations: Mutex<HashMap<String, u64>>,
    tokens: Mutex<HashMap<u64, Minted>>,
    /// One mint at a time per installation: calls that find the token stale together wait for
    /// one new token instead of each minting their own.
    minting: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokens")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct WireToken {
    token: String,
    expires_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct WireInstallation {
    id: u64,
    account: Option<WireAccount>,
}

#[derive(Deserialize)]
struct WireAccount {
    login: String,
}

impl AppTokens {
    /// The App `app_id` with its private key, against the API at `api_url`; each request gets
    /// `timeout`. The key is parsed now, so a key that is not an RSA PEM fails at start-up.
    pub fn new(
        app_id: u64,
        key: RotatingSecret,
        api_url: &str,
        timeout: std::time::Duration,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Result<AppTokens, Failure> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent("deploybot")
            .build()
            .map_err(|e| Failure::permanent("setting up the GitHub App client", e.to_string()))?;
        let app = AppTokens {
            app_id,
            key,
            signing: Mutex::new(None),
            api: api_url.trim_end_matches('/').to_string(),
            http,
            clock,
            installations: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            minting: Mutex::new(HashMap::new()),
        };
        app.jwt()?;
        Ok(app)
    }

    /// A JWT for the App, valid now; the key file is read again and re-parsed if it changed.
    fn jwt(&self) -> Result<Secret, Failure> {
        let pem = self.key.current();
        let key = {
            let mut signing = self.signing.lock().unwrap_or_else(|p| p.into_inner());
            match &*signing {
                Some((seen, key)) if *seen == pem => Arc::clone(key),
                _ => {
                    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes())
                        .map_err(|e| {
                            Failure::permanent(
                                format!("reading the private key of GitHub App {}", self.app_id),
                                format!(
                                    "github.private_key is not an RSA private key in PEM form \
                                     ({e}); use the .pem file GitHub generated for the App"
                                ),
                            )
                        })?;
                    let key = Arc::new(key);
                    *signing = Some((pem, Arc::clone(&key)));
                    key
                }
            }
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &AppClaims::at(self.app_id, self.clock.now()), &key)
            .map(Secret::new)
            .map_err(|e| {
                Failure::permanent(
                    format!("signing a JWT for GitHub App {}", self.app_id),
                    e.to_string(),
                )
            })
    }

    /// One request authenticated as the App (the JWT); status and body.
    async fn as_app(
        &self,
        method: reqwest::Method,
        path: &str,
        doing: &str,
    ) -> Result<(u16, bytes::Bytes), Failure> {
        let jwt = self.jwt()?;
        let resp = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(jwt.expose())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(|e| transport(doing, e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| transport(doing, e))?;
        if (200..300).contains(&status) {
            return Ok((status, body));
        }
        let hint = match status {
            401 => {
                "; GitHub refused the App's JWT: check github.app_id, the private key, and that \
                 this host's clock is right"
            }
            404 => "; is the App installed on this account or repository?",
            _ => "",
        };
        // The GitHub adapter's one classification (rate limits and 5xx may pass later).
        Err(crate::adapters::github::fail(
            doing,
            Some(status),
            format!("{}{hint}", crate::adapters::github::error_message(&body)),
        ))
    }

    /// The installation serving `scope`'s account: learned, cached, else asked of GitHub.
    async fn installation(&self, scope: Scope<'_>) -> Result<u64, Failure> {
        let account = scope.account().to_ascii_lowercase();
        if account.is_empty() {
            return Err(Failure::permanent(
                format!("choosing an installation of GitHub App {}", self.app_id),
                "the remote's URL does not name OWNER/NAME, so which installation serves it is \
                 unknown; give the GitOps repository's https URL as GitHub shows it, or set \
                 gitops.token_env",
            ));
        }
        if let Some(id) = self.cached_installation(&account) {
            return Ok(id);
        }
        let found = match scope {
            Scope::Repo(repo) => {
                let doing = format!("finding the GitHub App installation for {repo}");
                let (_, body) = self
                    .as_app(
                        reqwest::Method::GET,
                        &format!("/repos/{}/{}/installation", repo.owner, repo.name),
                        &doing,
                    )
                    .await?;
                parse::<WireInstallation>(&body, &doing)?.id
            }
            Scope::Account(login) => {
                let doing = format!("finding the GitHub App installation for {login}");
                let (_, body) = self
                    .as_app(
                        reqwest::Method::GET,
                        "/app/installations?per_page=100",
                        &doing,
                    )
                    .await?;
                parse::<Vec<WireInstallation>>(&body, &doing)?
                    .into_iter()
                    .find(|i| {
                        i.account
                            .as_ref()
                            .is_some_and(|a| a.login.eq_ignore_ascii_case(login))
                    })
                    .map(|i| i.id)
                    .ok_or_else(|| {
                        Failure::permanent(
                            doing,
                            format!("GitHub App {} is not installed on {login}", self.app_id),
                        )
                    })?
            }
        };
        self.installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account, found);
        Ok(found)
    }

    fn cached_installation(&self, account: &str) -> Option<u64> {
        self.installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .copied()
    }

    /// A new installation token for `installation`, cached.
    async fn mint(&self, installation: u64) -> Result<Secret, Failure> {
        let doing = format!("minting a token for installation {installation} of GitHub App");
        let (_, body) = self
            .as_app(
                reqwest::Method::POST,
                &format!("/app/installations/{installation}/access_tokens"),
                &doing,
            )
            .await?;
        let wire: WireToken = parse(&body, &doing)?;
        let minted = Minted {
            token: Secret::new(wire.token),
            minted: self.clock.now(),
            expires: wire.expires_at,
        };
        tracing::debug!(installation, expires_at = %minted.expires, "minted an installation token");
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(installation, minted.clone());
        Ok(minted.token)
    }

    /// The cached token of `installation` if it is still good to use.
    fn fresh(&self, installation: u64) -> Option<Secret> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let m = tokens.get(&installation)?;
        (freshness(m.minted, m.expires, self.clock.now()) == Freshness::Use)
            .then(|| m.token.clone())
    }

    async fn current(&self, scope: Scope<'_>) -> Result<Secret, Failure> {
        let installation = self.installation(scope).await?;
        if let Some(t) = self.fresh(installation) {
            return Ok(t);
        }
        let gate = Arc::clone(
            self.minting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(installation)
                .or_default(),
        );
        let _one = gate.lock().await;
        // Another call may have minted while this one waited.
        match self.fresh(installation) {
            Some(t) => Ok(t),
            None => self.mint(installation).await,
        }
    }
}

impl TokenSource for AppTokens {
    fn token<'a>(&'a self, scope: Scope<'a>) -> PortFuture<'a, Option<Secret>> {
        Box::pin(async move { self.current(scope).await.map(Some) })
    }

    fn refused(&self, scope: Scope<'_>, token: &Secret) {
        let Some(installation) = self.cached_installation(&scope.account().to_ascii_lowercase())
        else {
            return;
        };
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        // Only the refused token: a concurrent call may already have minted its successor.
        if tokens.get(&installation).is_some_and(|m| m.token == *token) {
            tokens.remove(&installation);
        }
    }

    fn learn(&self, repo: &RepoName, installation: u64) {
        self.installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(repo.owner.to_ascii_lowercase(), installation);
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], doing: &str) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::permanent(doing, format!("unexpected response shape: {e}")))
}

/// No answer from GitHub: classified as the GitHub adapter classifies it (transient). The URL
/// is left out: it is the configured API base and a path, and the message reads better alone.
fn transport(doing: &str, e: reqwest::Error) -> Failure {
    crate::adapters::github::fail(doing, None, e.without_url().to_string())
}

/// The token source the config names: the App, else a token, else none. The secrets are read
/// now; an App key that cannot be parsed fails here.
pub fn from_config(
    github: &deploybot_core::config::GithubSpec,
    clock: Arc<dyn Clock + Send + Sync>,
) -> Result<Arc<dyn TokenSource>, String> {
    if let Some(app) = &github.app {
        let key = RotatingSecret::read(app.private_key.clone())
            .map_err(|e| format!("github.private_key: {e}"))?;
        let tokens = AppTokens::new(
            app.id,
            key,
            github.api_base(),
            github.timeout.as_duration(),
            clock,
        )
        .map_err(|e| e.to_string())?;
        return Ok(Arc::new(tokens));
    }
    match &github.token {
        Some(r) => Ok(Arc::new(PersonalToken(
            RotatingSecret::read(r.clone()).map_err(|e| format!("github.token: {e}"))?,
        ))),
        None => Ok(Arc::new(Unauthenticated)),
    }
}

/// Where `https://` GitOps remotes get their token: `gitops.token_*` when set, else what GitHub
/// calls use (the App's installation tokens or the `github.token_*`), else none.
pub fn for_gitops(
    config: &deploybot_core::config::Config,
    github: &Arc<dyn TokenSource>,
) -> Result<Option<Arc<dyn TokenSource>>, String> {
    match &config.gitops.token {
        Some(r) => Ok(Some(Arc::new(PersonalToken(
            RotatingSecret::read(r.clone()).map_err(|e| format!("gitops.token: {e}"))?,
        )))),
        None if config.github.authenticated() => Ok(Some(Arc::clone(github))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::failure::Class;

    #[test]
    fn a_file_secret_follows_its_file_and_keeps_the_last_value_while_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "ghs_one\n").unwrap();
        let s = RotatingSecret::read(SecretRef::File(file.clone())).unwrap();
        assert_eq!(s.current().expose(), "ghs_one");
        std::fs::write(&file, "ghs_two\n").unwrap();
        assert_eq!(s.current().expose(), "ghs_two");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(s.current().expose(), "ghs_two");
    }

    #[test]
    fn a_key_that_is_not_rsa_pem_fails_at_start_up_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(&file, "not-a-key-but-secret-text").unwrap();
        let e = AppTokens::new(
            1,
            RotatingSecret::read(SecretRef::File(file)).unwrap(),
            "http://127.0.0.1:9",
            std::time::Duration::from_secs(1),
            Arc::new(crate::adapters::clock::SystemClock),
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("not an RSA private key in PEM form"), "{m}");
        assert!(!m.contains("secret-text"), "{m}");
        assert_eq!(e.class, Class::Permanent);
    }
}
