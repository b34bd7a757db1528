//! The octocrab adapter of every GitHub role (`deploybot_core::github`): REST calls against
//! `github.api_url` (github.com or a GitHub Enterprise Server `/api/v3`), authenticated with the
//! configured token. PR mode's writes on the GitOps repository go through it too, so there is
//! one GitHub client and one error policy.
//!
//! It uses octocrab's raw request methods rather than its typed APIs so that status codes (404
//! for a missing label or a non-collaborator, 422 for a label that already exists, 409 for a
//! merge whose head moved, 200 for a reaction already given) and the `Link` header stay visible,
//! and every call gets the same rate-limit waits; it translates GitHub's JSON into the roles'
//! domain types and classifies every failure once ([`fail`]), naming what was happening. The
//! only retry here is GitHub's own request to wait (429, or 403 from a secondary rate limit, with
//! `Retry-After` or an exhausted `x-ratelimit-remaining`), a few times and for a bounded wait;
//! every other failure goes back to the caller, whose error policy decides.

use http_body_util::BodyExt;
use octocrab::Octocrab;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::adapters::clock::SystemClock;
use crate::adapters::github_auth::{FixedToken, Unauthenticated};
use crate::adapters::retry::retry;
use deploybot_core::clock::Clock as _;
use deploybot_core::failure::{Class, Failure, PortFuture};
use deploybot_core::github::token::{Scope, TokenSource};
use deploybot_core::github::{
    Approvals, BotPullRequest, Checks, Comment, Comments, CommitStatus, GitopsPullRequests,
    LabelSpec, Labels, Merge, MergeMethod, Permission, PullFile, PullRequest, PullRequests,
    Reaction, RepoName,
};
use deploybot_core::gitops::commit_message::PullRequestText;
use deploybot_core::retry::{Jitter, RetryOn, RetryPolicy};
use deploybot_core::risk::FileStatus;
use deploybot_core::rollout::approval::{Review, ReviewState};
use deploybot_core::rollout::trigger::CheckRun;
use deploybot_core::secret::Secret;

/// Pages are bounded so that a hostile or broken `Link` chain cannot loop forever.
const MAX_PAGES: usize = 40;

/// GitHub through octocrab.
pub struct GithubRest {
    client: Octocrab,
    /// Who each request is made as: asked per request, so an expiring App token is replaced.
    tokens: Arc<dyn TokenSource>,
    /// The waits GitHub asks for (rate limits), honoured per request.
    rate_limits: RetryPolicy,
    /// Path of the API base (`/api/v3` on GitHub Enterprise Server, empty on github.com), removed
    /// from `Link` URLs because octocrab prefixes it again.
    base_path: String,
    /// The whole of one request, its response body included (`github.timeout`): a GitHub that
    /// hangs or trickles fails the call instead of holding its caller.
    timeout: std::time::Duration,
}

impl std::fmt::Debug for GithubRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubRest")
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

/// `github.timeout`'s default.
fn default_timeout() -> std::time::Duration {
    deploybot_core::config::Config::default()
        .github
        .timeout
        .as_duration()
}

/// Only the waits GitHub asks for: `retries` of them, each at most `max_wait`.
fn rate_limit_policy(retries: u32, max_wait: std::time::Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts: retries.saturating_add(1),
        initial: std::time::Duration::ZERO,
        multiplier: 1.0,
        max: max_wait,
        jitter: Jitter::None,
        on: RetryOn::PeerRequest,
    }
}

/// One answer of GitHub: status, the wait it asked for (rate limiting), the `Link` header's
/// next page, and the body.
type Answer = (
    u16,
    Option<std::time::Duration>,
    Option<String>,
    bytes::Bytes,
);

impl GithubRest {
    /// A client authenticated with one fixed token (or none).
    pub fn new(api_url: &str, token: Option<&Secret>) -> Result<GithubRest, Failure> {
        let tokens: Arc<dyn TokenSource> = match token {
            Some(t) => Arc::new(FixedToken(t.clone())),
            None => Arc::new(Unauthenticated),
        };
        GithubRest::with_tokens(api_url, tokens)
    }

    /// A client that asks `tokens` for the token of each request (a GitHub App's installation
    /// tokens, a rotated token file).
    pub fn with_tokens(api_url: &str, tokens: Arc<dyn TokenSource>) -> Result<GithubRest, Failure> {
        let doing = format!("setting up the GitHub client for {api_url}");
        let err = |message: String| fail(&doing, None, message);
        let uri = reqwest::Url::parse(api_url).map_err(|e| err(format!("{e}")))?;
        // octocrab's default retry repeats 429s and 5xx (POSTs included) at once, ignoring
        // Retry-After; the waits here honour it, and other failures go to the caller.
        // No credentials in the client itself: each request carries the token `tokens` answers.
        let builder = Octocrab::builder()
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
            .base_uri(api_url)
            .map_err(|e| err(e.to_string()))?;
        let timeout = default_timeout();
        let client = builder
            .set_connect_timeout(Some(timeout))
            .build()
            .map_err(|e| err(e.to_string()))?;
        Ok(GithubRest {
            client,
            tokens,
            rate_limits: rate_limit_policy(3, std::time::Duration::from_secs(60)),
            base_path: uri.path().trim_end_matches('/').to_string(),
            timeout,
        })
    }

    /// The deadline of one request (default: `github.timeout`'s default, 30 s).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often and how long to wait when GitHub says so (defaults: 3 times, 60 s at most).
    pub fn with_rate_limit_waits(mut self, retries: u32, max_wait: std::time::Duration) -> Self {
        self.rate_limits = rate_limit_policy(retries, max_wait);
        self
    }

    /// One request, tried again while GitHub asks to wait (within the policy's bounds).
    async fn send(
        &self,
        method: &str,
        route: &str,
        body: Option<&serde_json::Value>,
        action: &str,
    ) -> Result<(u16, Option<String>, bytes::Bytes), Failure> {
        retry(&self.rate_limits, tokio::time::sleep, |_| async move {
            let (status, wait, next, bytes) = self.send_once(method, route, body, action).await?;
            match wait {
                // Whatever the message says, GitHub asking to wait means a later try may pass.
                Some(w) => Err(Failure::transient(
                    action,
                    http_cause(status, &error_message(&bytes)),
                )
                .after(w)),
                None => Ok((status, next, bytes)),
            }
        })
        .await
    }

    /// One request within the deadline; a timeout is transient (GitHub may answer next time).
    async fn send_once(
        &self,
        method: &str,
        route: &str,
        body: Option<&serde_json::Value>,
        action: &str,
    ) -> Result<Answer, Failure> {
        tokio::time::timeout(
            self.timeout,
            self.send_unbounded(method, route, body, action),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Failure::transient(
                action,
                format!("GitHub did not answer within {:?}", self.timeout),
            ))
        })
    }

    /// One request; the wait GitHub asks for, if it refused for rate limiting. A 401 is asked
    /// once more with a token minted (or read) afresh, since an installation token may have
    /// expired or been revoked between being handed out and arriving; only a second 401 is
    /// GitHub's answer.
    async fn send_unbounded(
        &self,
        method: &str,
        route: &str,
        body: Option<&serde_json::Value>,
        action: &str,
    ) -> Result<Answer, Failure> {
        let owned = scope_of(route);
        let scope = owned.scope();
        let mut token = self.tokens.token(scope).await?;
        let mut resp = self
            .request(method, route, body, token.as_ref(), action)
            .await?;
        if resp.status().as_u16() == 401
            && let Some(refused) = token.take()
        {
            self.tokens.refused(scope, &refused);
            token = self.tokens.token(scope).await?;
            resp = self
                .request(method, route, body, token.as_ref(), action)
                .await?;
        }
        let status = resp.status().as_u16();
        // The wait is slept in real time, so it is measured against the wall clock.
        let wait = rate_limit_wait(status, resp.headers(), SystemClock.now());
        let next = resp
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(action, Some(status), format!("reading the response: {e}")))?
            .to_bytes();
        Ok((status, wait, next, bytes))
    }

    /// One HTTP exchange with `token` as the bearer.
    async fn request(
        &self,
        method: &str,
        route: &str,
        body: Option<&serde_json::Value>,
        token: Option<&Secret>,
        action: &str,
    ) -> Result<
        http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, octocrab::Error>>,
        Failure,
    > {
        let method = match method {
            "GET" => http::Method::GET,
            "POST" => http::Method::POST,
            "PATCH" => http::Method::PATCH,
            "PUT" => http::Method::PUT,
            "DELETE" => http::Method::DELETE,
            other => unreachable!("method {other}"),
        };
        let mut builder = http::Request::builder().method(method).uri(route);
        if let Some(t) = token {
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                .map_err(|_| {
                    fail(
                        action,
                        None,
                        "the GitHub token holds characters an HTTP header cannot carry".into(),
                    )
                })?;
            value.set_sensitive(true);
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        let request = self
            .client
            .build_request(builder, body)
            .map_err(|e| fail(action, None, octocrab_message(&e)))?;
        self.client
            .execute(request)
            .await
            .map_err(|e| fail(action, None, octocrab_message(&e)))
    }

    /// A JSON request that must succeed (2xx).
    async fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        route: &str,
        body: Option<&serde_json::Value>,
        action: &str,
    ) -> Result<T, Failure> {
        let (status, _, bytes) = self.send(method, route, body, action).await?;
        ok_json(status, &bytes, action)
    }

    /// Every page of a list, following `rel="next"`.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        route: &str,
        action: &str,
    ) -> Result<Vec<T>, Failure> {
        self.all_pages_of(route, action, |page: Vec<T>| page).await
    }

    /// Every page of a paginated response whose items `items` takes out of each page (the
    /// check-runs and combined-status APIs wrap their lists in an object).
    async fn all_pages_of<P: DeserializeOwned, T>(
        &self,
        route: &str,
        action: &str,
        items: impl Fn(P) -> Vec<T>,
    ) -> Result<Vec<T>, Failure> {
        let sep = if route.contains('?') { '&' } else { '?' };
        let mut route = format!("{route}{sep}per_page=100");
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let (status, next, bytes) = self.send("GET", &route, None, action).await?;
            let page: P = ok_json(status, &bytes, action)?;
            out.append(&mut items(page));
            match next {
                Some(url) => route = self.route_of(&url),
                None => return Ok(out),
            }
        }
        Err(fail(action, None, format!("more than {MAX_PAGES} pages")))
    }

    /// `https://host/api/v3/repos/...?page=2` -> `/repos/...?page=2`.
    fn route_of(&self, url: &str) -> String {
        let pq = match reqwest::Url::parse(url) {
            Ok(u) => match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            },
            Err(_) => url.to_string(),
        };
        match pq.strip_prefix(&self.base_path) {
            Some(rest) if !self.base_path.is_empty() => rest.to_string(),
            _ => pq,
        }
    }
}

/// What a route is about, for the token it needs: `/repos/{owner}/{repo}/...` a repository,
/// `/orgs/{org}/...` an organisation.
enum RouteScope {
    Repo(RepoName),
    Account(String),
}

impl RouteScope {
    fn scope(&self) -> Scope<'_> {
        match self {
            RouteScope::Repo(r) => Scope::Repo(r),
            RouteScope::Account(a) => Scope::Account(a),
        }
    }
}

fn scope_of(route: &str) -> RouteScope {
    let path = route.split('?').next().unwrap_or(route);
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("repos"), Some(owner), Some(name)) => RouteScope::Repo(RepoName {
            owner: owner.to_string(),
            name: name.to_string(),
        }),
        (_, Some(account), _) => RouteScope::Account(account.to_string()),
        _ => RouteScope::Account(String::new()),
    }
}

/// GitHub's one classification. Rate limits (429, or a 403 saying so), server errors and
/// failures with no answer at all may succeed later; anything else GitHub answered will not.
fn class_of(status: Option<u16>, message: &str) -> Class {
    let transient = match status {
        None => true,
        Some(s) => s == 429 || s == 403 && message.contains("rate limit") || s >= 500,
    };
    if transient {
        Class::Transient
    } else {
        Class::Permanent
    }
}

/// `HTTP 404: Not Found`, or the message alone when GitHub never answered.
fn http_cause(status: u16, message: &str) -> String {
    format!("HTTP {status}: {message}")
}

/// A failure while `action`, classified from the status GitHub answered (if it did).
pub(crate) fn fail(action: &str, status: Option<u16>, message: String) -> Failure {
    let class = class_of(status, &message);
    let cause = match status {
        Some(s) => http_cause(s, &message),
        None => message,
    };
    Failure::new(class, action, cause)
}

fn ok_json<T: DeserializeOwned>(status: u16, bytes: &[u8], action: &str) -> Result<T, Failure> {
    if !(200..300).contains(&status) {
        return Err(refused(status, bytes, action));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        fail(
            action,
            Some(status),
            format!("unexpected response shape: {e}"),
        )
    })
}

/// GitHub's `{"message": ...}`, or the start of whatever came back.
pub(crate) fn error_message(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E {
        message: String,
    }
    match serde_json::from_slice::<E>(bytes) {
        Ok(e) => e.message,
        Err(_) => String::from_utf8_lossy(bytes).chars().take(200).collect(),
    }
}

/// A failed response as an error.
fn refused(status: u16, bytes: &[u8], action: &str) -> Failure {
    fail(action, Some(status), error_message(bytes))
}

fn octocrab_message(e: &octocrab::Error) -> String {
    // octocrab's Display carries a backtrace for some variants; the first line is the message.
    let mut s = e.to_string();
    if let Some(i) = s.find("\n") {
        s.truncate(i);
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The wait GitHub asks for on a rate-limited response: `Retry-After` seconds, else the reset
/// time of an exhausted primary limit. Other responses ask for nothing.
fn rate_limit_wait(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<std::time::Duration> {
    if status != 429 && status != 403 {
        return None;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(secs) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(std::time::Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset")?.trim().parse::<i64>().ok()?;
        return Some(std::time::Duration::from_secs(
            reset.saturating_sub(now.timestamp()).max(1) as u64,
        ));
    }
    // A 403 without either header is a permission problem, not a limit.
    None
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// Percent-encodes a path segment (label names contain `/` and spaces).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct WireUser {
    login: String,
}

#[derive(Deserialize)]
struct WireLabel {
    name: String,
}

#[derive(Deserialize)]
struct WireRef {
    sha: String,
}

#[derive(Deserialize)]
struct WirePull {
    number: u64,
    title: String,
    body: Option<String>,
    user: WireUser,
    #[serde(default)]
    labels: Vec<WireLabel>,
    head: WireRef,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    merged_by: Option<WireUser>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    changed_files: Option<u64>,
}

#[derive(Deserialize)]
struct WireFile {
    filename: String,
    previous_filename: Option<String>,
    status: String,
    additions: u32,
    deletions: u32,
    patch: Option<String>,
}

#[derive(Deserialize)]
struct WireCommitInner {
    message: String,
}

#[derive(Deserialize)]
struct WireCommit {
    commit: WireCommitInner,
}

#[derive(Deserialize)]
struct WireComment {
    id: u64,
    body: Option<String>,
    user: Option<WireUser>,
}

impl From<WireComment> for Comment {
    fn from(c: WireComment) -> Comment {
        Comment {
            id: c.id,
            author: c.user.map(|u| u.login).unwrap_or_default(),
            body: c.body.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct WireReview {
    /// `null` for a deleted account.
    user: Option<WireUser>,
    state: String,
    /// `null` when the reviewed commit is gone (force-pushed away).
    commit_id: Option<String>,
    /// Absent on a pending (not yet submitted) review.
    submitted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// GitHub's review state (`APPROVED` in the REST API, `approved` in webhooks).
fn review_state(s: &str) -> Option<ReviewState> {
    Some(match s.to_ascii_uppercase().as_str() {
        "APPROVED" => ReviewState::Approved,
        "CHANGES_REQUESTED" => ReviewState::ChangesRequested,
        "COMMENTED" => ReviewState::Commented,
        "DISMISSED" => ReviewState::Dismissed,
        "PENDING" => ReviewState::Pending,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct WirePermission {
    permission: String,
    /// The fine-grained role (`maintain`, `triage`, a custom role); absent on older servers.
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct WireMerge {
    sha: String,
}

#[derive(Deserialize)]
struct WireBranch {
    #[serde(rename = "ref")]
    name: String,
}

#[derive(Deserialize)]
struct WireBotPull {
    number: u64,
    html_url: Option<String>,
    head: WireBranch,
    base: WireBranch,
    /// Set once merged (a closed PR that was not merged has none).
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
}

impl From<WireBotPull> for BotPullRequest {
    fn from(p: WireBotPull) -> BotPullRequest {
        BotPullRequest {
            number: p.number,
            url: p.html_url.unwrap_or_default(),
            head: p.head.name,
            base: p.base.name,
        }
    }
}

#[derive(Deserialize)]
struct WireCheckRun {
    id: u64,
    name: String,
    status: String,
    conclusion: Option<String>,
}

#[derive(Deserialize)]
struct WireCheckRuns {
    check_runs: Vec<WireCheckRun>,
}

#[derive(Deserialize)]
struct WireStatus {
    id: u64,
    context: String,
    state: String,
}

#[derive(Deserialize)]
struct WireCombinedStatus {
    statuses: Vec<WireStatus>,
}

/// A commit status as a check run: `pending` is still running; `success`, `failure` and
/// `error` are conclusions (the checks gate passes only `success`).
fn status_as_check_run(s: WireStatus) -> CheckRun {
    let done = s.state != "pending";
    CheckRun {
        id: s.id,
        name: s.context,
        status: if done { "completed" } else { "in_progress" }.to_string(),
        conclusion: done.then_some(s.state),
    }
}

impl PullRequests for GithubRest {
    fn pull_request<'a>(&'a self, repo: &'a RepoName, number: u64) -> PortFuture<'a, PullRequest> {
        Box::pin(async move {
            let route = format!("/repos/{}/{}/pulls/{number}", repo.owner, repo.name);
            let p: WirePull = self
                .json(
                    "GET",
                    &route,
                    None,
                    &format!("reading pull request {repo}#{number}"),
                )
                .await?;
            Ok(PullRequest {
                number: p.number,
                title: p.title,
                body: p.body.unwrap_or_default(),
                author: p.user.login,
                labels: p.labels.into_iter().map(|l| l.name).collect(),
                head_sha: p.head.sha,
                merged: p.merged.unwrap_or(false),
                merge_commit_sha: p.merge_commit_sha,
                merged_by: p.merged_by.map(|u| u.login),
                open: p.state.as_deref() == Some("open"),
                draft: p.draft.unwrap_or(false),
                changed_files: p.changed_files.unwrap_or(0),
            })
        })
    }

    fn pull_request_files<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
    ) -> PortFuture<'a, Vec<PullFile>> {
        Box::pin(async move {
            let route = format!("/repos/{}/{}/pulls/{number}/files", repo.owner, repo.name);
            let files: Vec<WireFile> = self
                .all_pages(&route, &format!("listing files of {repo}#{number}"))
                .await?;
            Ok(files
                .into_iter()
                .map(|f| PullFile {
                    path: f.filename,
                    previous_path: f.previous_filename,
                    status: FileStatus::from_github(&f.status),
                    additions: f.additions,
                    deletions: f.deletions,
                    patch: f.patch,
                })
                .collect())
        })
    }

    fn pull_request_commits<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
    ) -> PortFuture<'a, Vec<String>> {
        Box::pin(async move {
            let route = format!("/repos/{}/{}/pulls/{number}/commits", repo.owner, repo.name);
            let commits: Vec<WireCommit> = self
                .all_pages(&route, &format!("listing commits of {repo}#{number}"))
                .await?;
            Ok(commits.into_iter().map(|c| c.commit.message).collect())
        })
    }
}

impl Comments for GithubRest {
    fn issue_comments<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
    ) -> PortFuture<'a, Vec<Comment>> {
        Box::pin(async move {
            let route = format!(
                "/repos/{}/{}/issues/{number}/comments",
                repo.owner, repo.name
            );
            let comments: Vec<WireComment> = self
                .all_pages(&route, &format!("listing comments of {repo}#{number}"))
                .await?;
            Ok(comments.into_iter().map(Comment::from).collect())
        })
    }

    fn create_comment<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
        body: &'a str,
    ) -> PortFuture<'a, Comment> {
        Box::pin(async move {
            let route = format!(
                "/repos/{}/{}/issues/{number}/comments",
                repo.owner, repo.name
            );
            let c: WireComment = self
                .json(
                    "POST",
                    &route,
                    Some(&serde_json::json!({ "body": body })),
                    &format!("commenting on {repo}#{number}"),
                )
                .await?;
            Ok(c.into())
        })
    }

    fn update_comment<'a>(
        &'a self,
        repo: &'a RepoName,
        comment_id: u64,
        body: &'a str,
    ) -> PortFuture<'a, Comment> {
        Box::pin(async move {
            let route = format!(
                "/repos/{}/{}/issues/comments/{comment_id}",
                repo.owner, repo.name
            );
            let c: WireComment = self
                .json(
                    "PATCH",
                    &route,
                    Some(&serde_json::json!({ "body": body })),
                    &format!("editing comment {comment_id} in {repo}"),
                )
                .await?;
            Ok(c.into())
        })
    }

    fn add_reaction<'a>(
        &'a self,
        repo: &'a RepoName,
        comment_id: u64,
        content: Reaction,
    ) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let action = format!(
                "reacting {} to comment {comment_id} in {repo}",
                content.as_str()
            );
            let route = format!(
                "/repos/{}/{}/issues/comments/{comment_id}/reactions",
                repo.owner, repo.name
            );
            let body = serde_json::json!({ "content": content.as_str() });
            let (status, _, bytes) = self.send("POST", &route, Some(&body), &action).await?;
            match status {
                // 200: the same reaction by the same user was already there.
                200 | 201 => Ok(()),
                s => Err(refused(s, &bytes, &action)),
            }
        })
    }
}

impl Labels for GithubRest {
    fn ensure_label<'a>(&'a self, repo: &'a RepoName, label: &'a LabelSpec) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let action = format!("creating label {:?} in {repo}", label.name);
            let get = format!(
                "/repos/{}/{}/labels/{}",
                repo.owner,
                repo.name,
                segment(&label.name)
            );
            let (status, _, bytes) = self.send("GET", &get, None, &action).await?;
            match status {
                200 => return Ok(()),
                404 => {}
                s => return Err(refused(s, &bytes, &action)),
            }
            let post = format!("/repos/{}/{}/labels", repo.owner, repo.name);
            let body = serde_json::json!({
                "name": label.name, "color": label.color, "description": label.description,
            });
            let (status, _, bytes) = self.send("POST", &post, Some(&body), &action).await?;
            match status {
                // 422: created meanwhile by someone else; the label exists, which is the goal.
                201 | 200 | 422 => Ok(()),
                s => Err(refused(s, &bytes, &action)),
            }
        })
    }

    fn add_labels<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
        labels: &'a [String],
    ) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let route = format!("/repos/{}/{}/issues/{number}/labels", repo.owner, repo.name);
            let _: Vec<WireLabel> = self
                .json(
                    "POST",
                    &route,
                    Some(&serde_json::json!({ "labels": labels })),
                    &format!("labelling {repo}#{number} with {labels:?}"),
                )
                .await?;
            Ok(())
        })
    }

    fn remove_label<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
        label: &'a str,
    ) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let action = format!("removing label {label:?} from {repo}#{number}");
            let route = format!(
                "/repos/{}/{}/issues/{number}/labels/{}",
                repo.owner,
                repo.name,
                segment(label)
            );
            let (status, _, bytes) = self.send("DELETE", &route, None, &action).await?;
            match status {
                200 | 204 | 404 => Ok(()),
                s => Err(refused(s, &bytes, &action)),
            }
        })
    }
}

impl Checks for GithubRest {
    fn set_commit_status<'a>(
        &'a self,
        repo: &'a RepoName,
        sha: &'a str,
        status: &'a CommitStatus,
    ) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let route = format!("/repos/{}/{}/statuses/{sha}", repo.owner, repo.name);
            let description: String = status.description.chars().take(140).collect();
            let mut body = serde_json::json!({
                "state": status.state.as_str(),
                "context": status.context,
                "description": description,
            });
            if let Some(url) = &status.target_url {
                body["target_url"] = serde_json::Value::String(url.clone());
            }
            let _: serde_json::Value = self
                .json(
                    "POST",
                    &route,
                    Some(&body),
                    &format!("setting status {} on {repo}@{sha}", status.context),
                )
                .await?;
            Ok(())
        })
    }

    fn check_runs<'a>(&'a self, repo: &'a RepoName, sha: &'a str) -> PortFuture<'a, Vec<CheckRun>> {
        Box::pin(async move {
            let route = format!(
                "/repos/{}/{}/commits/{}/check-runs",
                repo.owner,
                repo.name,
                segment(sha)
            );
            let mut runs = self
                .all_pages_of(
                    &route,
                    &format!("listing check runs of {repo}@{sha}"),
                    |p: WireCheckRuns| p.check_runs,
                )
                .await?
                .into_iter()
                .map(|r| CheckRun {
                    id: r.id,
                    name: r.name,
                    status: r.status,
                    conclusion: r.conclusion,
                })
                .collect::<Vec<_>>();
            // The combined status already keeps only the latest status per context.
            let route = format!(
                "/repos/{}/{}/commits/{}/status",
                repo.owner,
                repo.name,
                segment(sha)
            );
            let statuses = self
                .all_pages_of(
                    &route,
                    &format!("reading the commit status of {repo}@{sha}"),
                    |p: WireCombinedStatus| p.statuses,
                )
                .await?;
            runs.extend(statuses.into_iter().map(status_as_check_run));
            Ok(runs)
        })
    }
}

impl Approvals for GithubRest {
    fn pull_request_reviews<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
    ) -> PortFuture<'a, Vec<Review>> {
        Box::pin(async move {
            let action = format!("listing reviews of {repo}#{number}");
            let route = format!("/repos/{}/{}/pulls/{number}/reviews", repo.owner, repo.name);
            let reviews: Vec<WireReview> = self.all_pages(&route, &action).await?;
            let mut out = Vec::with_capacity(reviews.len());
            for r in reviews {
                // A deleted account's review can be neither attributed nor counted.
                let Some(user) = r.user else { continue };
                let state = review_state(&r.state).ok_or_else(|| {
                    fail(
                        &action,
                        Some(200),
                        format!("unknown review state {:?}", r.state),
                    )
                })?;
                out.push(Review {
                    reviewer: user.login,
                    state,
                    // An empty SHA never matches a head, so such a review never counts.
                    commit_sha: r.commit_id.unwrap_or_default(),
                    // Only a pending review lacks it; pending is never decisive, so sorting it
                    // first changes no outcome.
                    submitted_at: r.submitted_at.unwrap_or(chrono::DateTime::UNIX_EPOCH),
                });
            }
            Ok(out)
        })
    }

    fn collaborator_permission<'a>(
        &'a self,
        repo: &'a RepoName,
        login: &'a str,
    ) -> PortFuture<'a, Permission> {
        Box::pin(async move {
            let action = format!("reading the permission of {login} on {repo}");
            let route = format!(
                "/repos/{}/{}/collaborators/{}/permission",
                repo.owner,
                repo.name,
                segment(login)
            );
            let (status, _, bytes) = self.send("GET", &route, None, &action).await?;
            if status == 404 {
                return Ok(Permission::None);
            }
            let p: WirePermission = ok_json(status, &bytes, &action)?;
            // A custom role has a name only its organization knows; its base permission is
            // in `permission`.
            p.role_name
                .as_deref()
                .and_then(Permission::from_github)
                .or_else(|| Permission::from_github(&p.permission))
                .ok_or_else(|| {
                    fail(
                        &action,
                        Some(status),
                        format!("unknown permission {:?}", p.permission),
                    )
                })
        })
    }

    fn team_members<'a>(&'a self, org: &'a str, team_slug: &'a str) -> PortFuture<'a, Vec<String>> {
        Box::pin(async move {
            let route = format!(
                "/orgs/{}/teams/{}/members",
                segment(org),
                segment(team_slug)
            );
            let users: Vec<WireUser> = self
                .all_pages(
                    &route,
                    &format!("listing members of team {org}/{team_slug}"),
                )
                .await?;
            Ok(users.into_iter().map(|u| u.login).collect())
        })
    }
}

impl GithubRest {
    /// The pull requests in `state` (`open`, `closed`) from the bot branch `head` of the
    /// repository's owner into `base`, every page.
    async fn pulls_between(
        &self,
        repo: &RepoName,
        head: &str,
        base: &str,
        state: &str,
    ) -> Result<Vec<WireBotPull>, Failure> {
        let action = format!(
            "listing {state} pull requests {}:{head} -> {base} in {repo}",
            repo.owner
        );
        let route = format!(
            "/repos/{}/{}/pulls?state={state}&head={}&base={}",
            repo.owner,
            repo.name,
            segment(&format!("{}:{head}", repo.owner)),
            segment(base)
        );
        self.all_pages(&route, &action).await
    }
}

impl GitopsPullRequests for GithubRest {
    fn find_open_pull_request<'a>(
        &'a self,
        repo: &'a RepoName,
        head: &'a str,
        base: &'a str,
    ) -> PortFuture<'a, Option<BotPullRequest>> {
        Box::pin(async move {
            let pulls = self.pulls_between(repo, head, base, "open").await?;
            // Filter again: the head filter silently matches nothing for a typo'd owner, and
            // a proxy or an old GHES may ignore it altogether.
            Ok(pulls
                .into_iter()
                .map(BotPullRequest::from)
                .find(|pr| pr.head == head && pr.base == base))
        })
    }

    fn open_pull_request<'a>(
        &'a self,
        repo: &'a RepoName,
        head: &'a str,
        base: &'a str,
        text: &'a PullRequestText,
    ) -> PortFuture<'a, BotPullRequest> {
        Box::pin(async move {
            let route = format!("/repos/{}/{}/pulls", repo.owner, repo.name);
            let body = serde_json::json!({
                "title": text.title, "head": head, "base": base, "body": text.body,
            });
            let pr: WireBotPull = self
                .json(
                    "POST",
                    &route,
                    Some(&body),
                    &format!("opening a pull request {head} -> {base} in {repo}"),
                )
                .await?;
            Ok(pr.into())
        })
    }

    fn merged_pull_request<'a>(
        &'a self,
        repo: &'a RepoName,
        head: &'a str,
        base: &'a str,
    ) -> PortFuture<'a, Option<String>> {
        Box::pin(async move {
            let pulls = self.pulls_between(repo, head, base, "closed").await?;
            Ok(pulls
                .into_iter()
                .filter(|p| p.head.name == head && p.base.name == base && p.merged_at.is_some())
                .max_by_key(|p| p.number)
                .and_then(|p| p.merge_commit_sha))
        })
    }

    fn merge_pull_request<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
        expected_head_sha: &'a str,
        method: MergeMethod,
    ) -> PortFuture<'a, Merge> {
        Box::pin(async move {
            let action = format!(
                "merging {repo}#{number} at {expected_head_sha} ({})",
                method.as_str()
            );
            let route = format!("/repos/{}/{}/pulls/{number}/merge", repo.owner, repo.name);
            // `sha` makes GitHub refuse if the head moved after the approval was counted (or
            // after the bot pushed the step).
            let body = serde_json::json!({
                "sha": expected_head_sha,
                "merge_method": method.as_str(),
            });
            let (status, _, bytes) = self.send("PUT", &route, Some(&body), &action).await?;
            match status {
                409 => Ok(Merge::HeadMoved(format!(
                    "the head moved past {expected_head_sha}, which is what was approved: {}",
                    error_message(&bytes)
                ))),
                // Conflicts, unmet branch protection, already merged: GitHub says which.
                405 => Ok(Merge::NotMergeable(error_message(&bytes))),
                _ => {
                    let m: WireMerge = ok_json(status, &bytes, &action)?;
                    Ok(Merge::Merged(m.sha))
                }
            }
        })
    }

    fn close_pull_request<'a>(&'a self, repo: &'a RepoName, number: u64) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let route = format!("/repos/{}/{}/pulls/{number}", repo.owner, repo.name);
            let body = serde_json::json!({ "state": "closed" });
            let _: WireBotPull = self
                .json(
                    "PATCH",
                    &route,
                    Some(&body),
                    &format!("closing pull request {repo}#{number}"),
                )
                .await?;
            Ok(())
        })
    }

    fn delete_branch<'a>(&'a self, repo: &'a RepoName, branch: &'a str) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let action = format!("deleting branch {branch} of {repo}");
            // The reference keeps its slashes; each part is encoded on its own.
            let reference: Vec<String> = branch.split('/').map(segment).collect();
            let route = format!(
                "/repos/{}/{}/git/refs/heads/{}",
                repo.owner,
                repo.name,
                reference.join("/")
            );
            let (status, _, bytes) = self.send("DELETE", &route, None, &action).await?;
            match status {
                200..=299 => Ok(()),
                // Already gone (deleted by hand, or by GitHub after the merge).
                422 if error_message(&bytes).contains("Reference does not exist") => Ok(()),
                _ => Err(refused(status, &bytes, &action)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_once_from_what_github_answered() {
        let class = |status, message: &str| fail("x", status, message.into()).class;
        assert_eq!(class(None, "connection reset"), Class::Transient);
        assert_eq!(class(Some(502), ""), Class::Transient);
        assert_eq!(class(Some(429), ""), Class::Transient);
        assert_eq!(
            class(Some(403), "You have exceeded a secondary rate limit"),
            Class::Transient
        );
        assert_eq!(
            class(Some(403), "Resource not accessible by integration"),
            Class::Permanent
        );
        assert_eq!(class(Some(404), "Not Found"), Class::Permanent);
        assert_eq!(
            class(Some(409), "Head branch was modified"),
            Class::Permanent
        );
        assert_eq!(class(Some(422), "Validation Failed"), Class::Permanent);
        assert_eq!(
            fail("x", Some(404), "Not Found".into()).to_string(),
            "x: HTTP 404: Not Found"
        );
    }

    #[test]
    fn link_headers_and_segments() {
        let h = "<https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=2>; rel=\"next\", <https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=3>; rel=\"last\"";
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=2")
        );
        assert_eq!(next_link("<https://x/?page=1>; rel=\"prev\""), None);
        assert_eq!(segment("risk/low"), "risk%2Flow");
        assert_eq!(segment("needs approval"), "needs%20approval");
    }

    #[test]
    fn rate_limit_waits_come_only_from_github_headers() {
        let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(
            rate_limit_wait(403, &h, now),
            None,
            "a plain 403 is a permission problem"
        );
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(
            rate_limit_wait(403, &h, now),
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(
            rate_limit_wait(429, &h, now),
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(rate_limit_wait(500, &h, now), None);
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        let reset = now.timestamp() + 30;
        h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        let w = rate_limit_wait(403, &h, now).unwrap();
        assert!(w.as_secs() >= 28 && w.as_secs() <= 30, "{w:?}");
    }

    #[tokio::test]
    async fn link_urls_lose_the_enterprise_base_path() {
        let gh = GithubRest::new("https://ghe.example.com/api/v3", None).unwrap();
        assert_eq!(
            gh.route_of("https://ghe.example.com/api/v3/repos/o/r/pulls/1/files?page=2"),
            "/repos/o/r/pulls/1/files?page=2"
        );
        let gh = GithubRest::new("https://api.github.com", None).unwrap();
        assert_eq!(
            gh.route_of("https://api.github.com/repos/o/r?page=2"),
            "/repos/o/r?page=2"
        );
    }
}
