//! The one fake GitHub REST API of the integration tests (axum on 127.0.0.1:0), for the risk
//! flow (PR, files, commits, comments, labels, statuses), the GitOps PR mode (list and open
//! PRs) and rollouts (reviews, collaborator permissions, team members, reactions, merge at a
//! SHA, check runs and the combined status).
//!
//! Objects are built from the real webhook payloads in fixtures/github-webhooks (the
//! pull request, comment, review, user, label and app objects are the same in webhooks and REST),
//! so octocrab and the adapter deserialize what GitHub really sends; objects with no webhook
//! example (check run, reaction, permission, combined status, merge result) follow GitHub's
//! documented REST schema. Lists are paginated with a real `Link` header and a small page, so
//! pagination is exercised. It serves one repository: owner and name in paths are not checked.
//!
//! Held to GitHub's REST description (`fixtures/github/openapi/`, through `support::openapi`):
//! a request or a response outside it is a violation that fails the test when the fake is
//! dropped.
//!
//! Tests set state through methods (`add_review`, `set_permission`, ...), inject failures
//! (`fail_next`) or something happening right after a request (`after_next`, e.g. a push while
//! deploybot is between two calls), and assert on the request log (`requests`, `writes`). It
//! does not model GitHub's permissions on its own writes: any (or the required) token may do
//! anything. The API is served at the root (github.com) and under `/api/v3` (GitHub Enterprise
//! Server).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::fixtures_dir;
use super::openapi::Description;

/// Largest page the fake serves, small so that pagination is exercised.
const PAGE: usize = 2;

/// The login of whoever holds the token: comments and reactions are written as it.
pub const BOT: &str = "deploybot[bot]";

/// A real webhook delivery from fixtures/github-webhooks.
pub fn webhook(event: &str, action: &str) -> Value {
    let path = fixtures_dir().join(format!("github-webhooks/{event}/{action}.payload.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A refusal queued by [`FakeGithub::fail_next`].
#[derive(Debug, Clone)]
pub struct Failure {
    pub method: Method,
    /// Matches requests whose path ends with this.
    pub path_suffix: String,
    pub status: u16,
    pub message: String,
    pub retry_after: Option<u64>,
}

/// Something that happens once, right after the fake answered a matching request (see
/// [`FakeGithub::after_next`]).
pub struct Hook {
    method: Method,
    path_suffix: String,
    run: Box<dyn FnOnce(&mut GhState) + Send>,
}

#[derive(Default)]
pub struct GhState {
    /// Pull requests as the REST API returns them, in creation order.
    pub pulls: Vec<Value>,
    pub files: BTreeMap<u64, Vec<Value>>,
    pub commits: BTreeMap<u64, Vec<Value>>,
    /// `(issue number, comment)`.
    pub comments: Vec<(u64, Value)>,
    pub repo_labels: BTreeMap<String, Value>,
    /// `(sha, the status as posted)`, oldest first.
    pub statuses: Vec<(String, Value)>,
    pub reviews: BTreeMap<u64, Vec<Value>>,
    /// login -> (role_name, legacy permission).
    pub permissions: BTreeMap<String, (String, String)>,
    /// (org, team slug) -> member logins.
    pub teams: BTreeMap<(String, String), Vec<String>>,
    /// `(comment id, reaction)`.
    pub reactions: Vec<(u64, Value)>,
    /// sha -> check runs.
    pub check_runs: BTreeMap<String, Vec<Value>>,
    /// Numbers of PRs GitHub would refuse to merge (conflicts, branch protection).
    pub unmergeable: Vec<u64>,
    /// The merge methods the repository allows (`merge`, `squash`, `rebase`); `None`: all.
    pub merge_methods: Option<Vec<String>>,
    /// Branch protection: contexts that must have succeeded on a PR's head (a commit status or
    /// a completed check run) before it merges.
    pub required_checks: Vec<String>,
    /// Branch protection: an approving review is required (the bot cannot give one).
    pub require_review: bool,
    /// `(number, merge_method, sha)` of every merge made through the API.
    pub merges: Vec<(u64, String, String)>,
    /// `(number, labels)` per add-labels call.
    pub label_calls: Vec<(u64, Vec<String>)>,
    /// `METHOD path[?query]` of every request, the query decoded and sorted.
    pub requests: Vec<String>,
    /// The `Authorization` header of every request that had one.
    pub authorization: Vec<String>,
    /// Requests outside GitHub's API description (see [`description`]): the fake fails the
    /// test when it is dropped with any, unless the test took them (`take_violations`).
    pub violations: Vec<String>,
    /// When set, other tokens get GitHub's 401.
    pub token: Option<String>,
    /// When set, GitHub App authentication: see [`FakeGithub::require_app`].
    pub app: Option<FakeApp>,
    pub failures: Vec<Failure>,
    /// What happens right after a matching request was answered, once each.
    pub hooks: Vec<Hook>,
    /// The PR `push`, `pr_labels` and `add_foreign_comment` work on.
    pub primary: Option<u64>,
    /// A real repository behind PRs opened through the API (see [`FakeGithub::back_with_git`]).
    pub git: Option<BareRepo>,
    next_id: u64,
}

/// A bare repository that PRs opened through the fake live in: a new PR's head SHA is its
/// branch tip, and merging makes a real merge commit on the base branch, as GitHub does.
#[derive(Debug, Clone)]
pub struct BareRepo(pub std::path::PathBuf);

impl BareRepo {
    fn git(&self, args: &[&str]) -> Result<String, String> {
        self.git_as(args, &[])
    }

    pub fn tip(&self, branch: &str) -> Option<String> {
        self.git(&["rev-parse", &format!("refs/heads/{branch}")])
            .ok()
    }

    /// `(sha, message)` of every commit reachable from `branch`, newest first.
    pub fn log(&self, branch: &str) -> Vec<(String, String)> {
        self.git(&["log", "--format=%H%n%B%x1e", branch])
            .unwrap_or_default()
            .split('\u{1e}')
            .filter_map(|c| {
                let (sha, message) = c.trim_start().split_once('\n')?;
                Some((sha.to_string(), message.to_string()))
            })
            .collect()
    }

    /// The commits a merge brought in: reachable from its second parent, not from its first
    /// (none for a commit that is not a merge).
    pub fn merged_by(&self, merge: &str) -> Vec<String> {
        self.git(&["rev-list", &format!("{merge}^2"), &format!("^{merge}^1")])
            .map(|out| out.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The file at `path` on `branch`, as git stores it.
    pub fn show(&self, branch: &str, path: &str) -> String {
        self.git(&["show", &format!("{branch}:{path}")])
            .unwrap_or_else(|e| panic!("{branch}:{path}: {e}"))
    }

    /// A person's commit on `branch` setting `path` to `content` (a push, without a work tree);
    /// returns the new tip.
    pub fn commit_as(&self, who: &str, branch: &str, path: &str, content: &str) -> String {
        let tip = self.tip(branch).expect("the branch exists");
        let index = tempfile::NamedTempFile::new().unwrap();
        let run = |args: &[&str], stdin: Option<&str>| {
            use std::io::Write as _;
            let mut child = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(&self.0)
                .args(args)
                .env("GIT_INDEX_FILE", index.path())
                .env("GIT_AUTHOR_NAME", who)
                .env("GIT_AUTHOR_EMAIL", format!("{who}@example.com"))
                .env("GIT_COMMITTER_NAME", who)
                .env("GIT_COMMITTER_EMAIL", format!("{who}@example.com"))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            if let Some(text) = stdin {
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
            }
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        run(&["read-tree", &tip], None);
        let blob = run(&["hash-object", "-w", "--stdin"], Some(content));
        run(
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},{path}"),
            ],
            None,
        );
        let tree = run(&["write-tree"], None);
        let commit = run(
            &[
                "commit-tree",
                &tree,
                "-p",
                &tip,
                "-m",
                &format!("{who} edits {path}"),
            ],
            None,
        );
        run(
            &["update-ref", &format!("refs/heads/{branch}"), &commit, &tip],
            None,
        );
        commit
    }

    fn git_as(&self, args: &[&str], author: &[(String, String)]) -> Result<String, String> {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&self.0)
            .args([
                "-c",
                "user.name=GitHub",
                "-c",
                "user.email=noreply@github.com",
            ])
            .args(args)
            .envs(author.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `commit`'s author as git's environment variables: GitHub keeps the author of what it
    /// squashes or rebases (the committer becomes GitHub).
    fn author_of(&self, commit: &str) -> Result<Vec<(String, String)>, String> {
        let who = self.git(&["log", "-1", "--format=%an%n%ae%n%aI", commit])?;
        let mut lines = who.lines().map(str::to_string);
        let mut next = || lines.next().unwrap_or_default();
        Ok(vec![
            ("GIT_AUTHOR_NAME".into(), next()),
            ("GIT_AUTHOR_EMAIL".into(), next()),
            ("GIT_AUTHOR_DATE".into(), next()),
        ])
    }

    /// GitHub's merge of `head` into `base` by `method`, without a work tree, moving `base` with
    /// `git update-ref` (so no hook of the repository runs, as on GitHub). `merge`: a merge
    /// commit; `squash`: one commit on `base` with the head's tree merged, whose message is the
    /// single commit's own (its subject suffixed ` (#n)`) or the PR title and the commits'
    /// subjects; `rebase`: each commit replayed on `base`. Returns the commit now at `base`.
    fn merge_by(
        &self,
        method: &str,
        number: u64,
        title: &str,
        head: &str,
        base: &str,
    ) -> Result<String, String> {
        let base_tip = self.tip(base).ok_or("no base")?;
        let head_tip = self.tip(head).ok_or("no head")?;
        let commits: Vec<String> = self
            .git(&["rev-list", "--reverse", &head_tip, &format!("^{base_tip}")])?
            .lines()
            .map(str::to_string)
            .collect();
        let new_tip = match method {
            "merge" => {
                return self.merge(
                    head,
                    base,
                    &format!("Merge pull request #{number} from {head}"),
                );
            }
            "squash" => {
                let tree = self.git(&["merge-tree", "--write-tree", &base_tip, &head_tip])?;
                let tree = tree.lines().next().unwrap_or_default().to_string();
                let message = match commits.as_slice() {
                    [one] => {
                        let m = self.git(&["log", "-1", "--format=%B", one])?;
                        let (subject, rest) = m.split_once('\n').unwrap_or((&m, ""));
                        format!("{subject} (#{number})\n{rest}")
                    }
                    many => {
                        let mut m = format!("{title} (#{number})\n");
                        for c in many {
                            let subject = self.git(&["log", "-1", "--format=%s", c])?;
                            m.push_str(&format!("\n* {subject}"));
                        }
                        m
                    }
                };
                self.git_as(
                    &["commit-tree", &tree, "-p", &base_tip, "-m", &message],
                    &self.author_of(&head_tip)?,
                )?
            }
            "rebase" => {
                let mut tip = base_tip.clone();
                for c in &commits {
                    let tree = self.git(&[
                        "merge-tree",
                        "--write-tree",
                        &format!("--merge-base={c}^"),
                        &tip,
                        c,
                    ])?;
                    let tree = tree.lines().next().unwrap_or_default().to_string();
                    let message = self.git(&["log", "-1", "--format=%B", c])?;
                    tip = self.git_as(
                        &["commit-tree", &tree, "-p", &tip, "-m", &message],
                        &self.author_of(c)?,
                    )?;
                }
                tip
            }
            other => return Err(format!("unknown merge method {other}")),
        };
        self.git(&[
            "update-ref",
            &format!("refs/heads/{base}"),
            &new_tip,
            &base_tip,
        ])?;
        Ok(new_tip)
    }

    /// `git merge --no-ff head` into `base`, without a work tree.
    fn merge(&self, head: &str, base: &str, message: &str) -> Result<String, String> {
        let base_tip = self.tip(base).ok_or("no base")?;
        let head_tip = self.tip(head).ok_or("no head")?;
        let tree = self.git(&["merge-tree", "--write-tree", &base_tip, &head_tip])?;
        let tree = tree.lines().next().unwrap_or_default().to_string();
        let commit = self.git(&[
            "commit-tree",
            &tree,
            "-p",
            &base_tip,
            "-p",
            &head_tip,
            "-m",
            message,
        ])?;
        self.git(&[
            "update-ref",
            &format!("refs/heads/{base}"),
            &commit,
            &base_tip,
        ])?;
        Ok(commit)
    }
}

impl GhState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn pull_mut(&mut self, number: u64) -> Option<&mut Value> {
        self.pulls.iter_mut().find(|p| p["number"] == json!(number))
    }
}

#[derive(Clone)]
struct Shared {
    st: Arc<Mutex<GhState>>,
    addr: SocketAddr,
}

type S = State<Shared>;

/// A GitHub App as GitHub checks it: `/app/...` and installation lookups need a JWT signed
/// by the App's key (RS256, `iss` the App id, not expired, at most ten minutes long); every
/// other request needs an installation token it issued, not expired, for the installation of
/// the path's account.
pub struct FakeApp {
    pub id: u64,
    key: jsonwebtoken::DecodingKey,
    /// account login (lower case) -> installation id.
    pub installations: BTreeMap<String, u64>,
    /// How long the tokens it issues live.
    pub lifetime: chrono::Duration,
    /// token -> (installation, expiry).
    pub tokens: BTreeMap<String, (u64, chrono::DateTime<chrono::Utc>)>,
    /// Why each refused JWT or token was refused, in order.
    pub refused: Vec<String>,
    /// GitHub's clock: the wall clock, or the test's virtual one (see
    /// [`FakeGithub::set_app_clock`]).
    clock: Arc<dyn deploybot_core::clock::Clock + Send + Sync>,
}

impl FakeApp {
    /// Whether `token` is an installation token it issued, unexpired, for `account`'s
    /// installation (any installation when `account` is `None`).
    pub fn valid_token(&self, token: &str, account: Option<&str>) -> Result<(), String> {
        let Some((installation, expires)) = self.tokens.get(token) else {
            return Err("unknown token".into());
        };
        if *expires <= self.clock.now() {
            return Err(format!("token of installation {installation} expired"));
        }
        match account.map(|a| self.installations.get(&a.to_ascii_lowercase())) {
            Some(Some(i)) if i != installation => Err(format!(
                "token of installation {installation} used on installation {i}"
            )),
            _ => Ok(()),
        }
    }

    fn valid_jwt(&self, jwt: &str) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct Claims {
            iat: i64,
            exp: i64,
        }
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.leeway = 0;
        v.validate_exp = false;
        v.set_issuer(&[self.id.to_string()]);
        v.set_required_spec_claims(&["exp", "iat", "iss"]);
        let claims = jsonwebtoken::decode::<Claims>(jwt, &self.key, &v)
            .map_err(|e| format!("JWT refused: {e}"))?
            .claims;
        let now = self.clock.now().timestamp();
        // jsonwebtoken checks `exp` against the wall clock; GitHub's clock may be virtual.
        if claims.exp <= now {
            return Err("JWT refused: ExpiredSignature".into());
        }
        if claims.exp - claims.iat > 600 {
            return Err("'Expiration time' claim ('exp') is too far in the future".into());
        }
        if claims.iat > now + 60 {
            return Err(
                "'Issued at' claim ('iat') must be an Integer representing a time in the past"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The fake; the server stops when it is dropped.
pub struct FakeGithub {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<GhState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
        let violations = std::mem::take(&mut self.state.lock().unwrap().violations);
        if !violations.is_empty() && !std::thread::panicking() {
            panic!("requests outside GitHub's REST API description: {violations:#?}");
        }
    }
}

impl FakeGithub {
    /// An empty repository; any token is accepted (see [`FakeGithub::require_token`]).
    pub async fn start() -> FakeGithub {
        let state = Arc::new(Mutex::new(GhState {
            next_id: 1_000,
            ..GhState::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            st: state.clone(),
            addr,
        };
        let api = Router::new()
            .route("/repos/{o}/{r}/pulls", get(list_pulls).post(create_pull))
            .route("/repos/{o}/{r}/pulls/{n}", get(get_pull).patch(update_pull))
            .route("/repos/{o}/{r}/git/refs/{*reference}", delete(delete_ref))
            .route("/repos/{o}/{r}/pulls/{n}/files", get(list_files))
            .route("/repos/{o}/{r}/pulls/{n}/commits", get(list_commits))
            .route("/repos/{o}/{r}/pulls/{n}/reviews", get(list_reviews))
            .route("/repos/{o}/{r}/pulls/{n}/merge", put(merge))
            .route(
                "/repos/{o}/{r}/issues/{n}/comments",
                get(list_comments).post(create_comment),
            )
            .route("/repos/{o}/{r}/issues/comments/{id}", patch(update_comment))
            .route(
                "/repos/{o}/{r}/issues/comments/{id}/reactions",
                post(create_reaction),
            )
            .route("/repos/{o}/{r}/labels/{name}", get(get_label))
            .route("/repos/{o}/{r}/labels", post(create_label))
            .route("/repos/{o}/{r}/issues/{n}/labels", post(add_labels))
            .route(
                "/repos/{o}/{r}/issues/{n}/labels/{name}",
                delete(remove_label),
            )
            .route("/repos/{o}/{r}/statuses/{sha}", post(create_status))
            .route("/repos/{o}/{r}/commits/{sha}/status", get(combined_status))
            .route(
                "/repos/{o}/{r}/commits/{sha}/check-runs",
                get(list_check_runs),
            )
            .route(
                "/repos/{o}/{r}/collaborators/{login}/permission",
                get(permission),
            )
            .route("/orgs/{org}/teams/{slug}/members", get(team_members))
            .route("/repos/{o}/{r}/installation", get(repo_installation))
            .route(
                "/app/installations/{id}/access_tokens",
                post(create_installation_token),
            );
        // github.com serves the API at the root, GitHub Enterprise Server under /api/v3.
        let app = Router::new()
            .merge(api.clone())
            .nest("/api/v3", api)
            .fallback(|| async { not_found() })
            .layer(axum::middleware::from_fn_with_state(shared.clone(), gate))
            .with_state(shared);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGithub { addr, state, task }
    }

    /// Serves the `pull_request` object of `payload` (a real webhook delivery) as the primary PR.
    pub async fn start_with_pr(payload: &Value) -> FakeGithub {
        let gh = FakeGithub::start().await;
        let pr = payload["pull_request"].clone();
        {
            let mut st = gh.state.lock().unwrap();
            // The label shape GitHub returns, from the payload's own labels.
            for l in pr["labels"].as_array().cloned().unwrap_or_default() {
                st.repo_labels
                    .insert(l["name"].as_str().unwrap().to_string(), l);
            }
        }
        let n = gh.add_pull(pr);
        gh.state.lock().unwrap().primary = Some(n);
        gh
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// PRs opened through the API from now on live in `repo`: real head SHAs, real merges.
    pub fn back_with_git(&self, repo: BareRepo) {
        self.state.lock().unwrap().git = Some(repo);
    }

    /// Requests without `Bearer token` (or `token token`) get GitHub's 401 "Bad credentials".
    pub fn require_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.to_string());
    }

    /// GitHub App mode: the App `id` whose public key is `public_pem`, installed on each
    /// `(account, installation id)`, issuing tokens that live `lifetime`. Replaces
    /// [`FakeGithub::require_token`].
    pub fn require_app(
        &self,
        id: u64,
        public_pem: &[u8],
        installations: &[(&str, u64)],
        lifetime: std::time::Duration,
    ) {
        self.state.lock().unwrap().app = Some(FakeApp {
            id,
            key: jsonwebtoken::DecodingKey::from_rsa_pem(public_pem).unwrap(),
            installations: installations
                .iter()
                .map(|(a, i)| (a.to_ascii_lowercase(), *i))
                .collect(),
            lifetime: chrono::Duration::from_std(lifetime).unwrap(),
            tokens: BTreeMap::new(),
            refused: Vec::new(),
            clock: Arc::new(deploybot::adapters::clock::SystemClock),
        });
    }

    /// The App mode's clock (issuing and checking tokens and JWTs) becomes `clock`.
    pub fn set_app_clock(&self, clock: Arc<dyn deploybot_core::clock::Clock + Send + Sync>) {
        self.state.lock().unwrap().app.as_mut().unwrap().clock = clock;
    }

    /// GitHub forgets every installation token it issued (revoked, or expired earlier than
    /// it said): each is refused from now on.
    pub fn revoke_tokens(&self) {
        if let Some(app) = self.state.lock().unwrap().app.as_mut() {
            app.tokens.clear();
        }
    }

    /// Installation tokens issued (and not revoked) so far.
    pub fn minted(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .app
            .as_ref()
            .map_or(0, |a| a.tokens.len())
    }

    /// Why the App's JWTs or tokens were refused, in order.
    pub fn refused(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .app
            .as_ref()
            .map_or(Vec::new(), |a| a.refused.clone())
    }

    /// Adds a PR object (a REST or webhook `pull_request`); returns its number.
    pub fn add_pull(&self, pr: Value) -> u64 {
        let n = pr["number"].as_u64().unwrap();
        let pr = rest_pull(&pr);
        self.state.lock().unwrap().pulls.push(pr);
        n
    }

    pub fn pull(&self, number: u64) -> Value {
        let mut st = self.state.lock().unwrap();
        st.pull_mut(number).unwrap().clone()
    }

    /// Replaces the primary PR's files (with their patches) and commits, and moves its head.
    pub fn push(&self, head_sha: &str, files: Vec<Value>, messages: &[&str]) {
        let n = self.state.lock().unwrap().primary.unwrap();
        self.push_to(n, head_sha, files, messages);
    }

    pub fn push_to(&self, number: u64, head_sha: &str, files: Vec<Value>, messages: &[&str]) {
        let mut st = self.state.lock().unwrap();
        let pr = st.pull_mut(number).unwrap();
        pr["head"]["sha"] = json!(head_sha);
        pr["changed_files"] = json!(files.len());
        let user = pr["user"].clone();
        let git_user =
            json!({"name": "Codertocat", "email": "c@example.com", "date": "2019-05-15T15:20:30Z"});
        let commits = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                json!({
                    "sha": format!("{head_sha}{i}"),
                    "url": format!("https://api.github.com/repos/Codertocat/Hello-World/commits/{head_sha}{i}"),
                    "node_id": format!("C_{head_sha}{i}"),
                    "html_url": format!("https://github.com/Codertocat/Hello-World/commit/{head_sha}{i}"),
                    "comments_url": format!("https://api.github.com/repos/Codertocat/Hello-World/commits/{head_sha}{i}/comments"),
                    "committer": user,
                    "parents": [],
                    "commit": {
                        "message": m,
                        "author": git_user,
                        "committer": git_user,
                        "comment_count": 0,
                        "tree": {"sha": head_sha, "url": format!("https://api.github.com/repos/Codertocat/Hello-World/git/trees/{head_sha}")},
                        "url": format!("https://api.github.com/repos/Codertocat/Hello-World/git/commits/{head_sha}{i}"),
                    },
                    "author": user,
                })
            })
            .collect();
        st.files.insert(number, files);
        st.commits.insert(number, commits);
    }

    /// A comment written by someone else on the primary PR; returns its id.
    pub fn add_foreign_comment(&self, login: &str, body: &str) -> u64 {
        let n = self.state.lock().unwrap().primary.unwrap();
        self.add_comment(n, login, body)
    }

    pub fn add_comment(&self, number: u64, login: &str, body: &str) -> u64 {
        let mut st = self.state.lock().unwrap();
        let c = comment_object(&mut st, login, body);
        let id = c["id"].as_u64().unwrap();
        st.comments.push((number, c));
        id
    }

    /// Every comment, on any PR.
    pub fn comments(&self) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        st.comments.iter().map(|(_, c)| c.clone()).collect()
    }

    pub fn pr_labels(&self) -> Vec<String> {
        let n = self.state.lock().unwrap().primary.unwrap();
        label_names(&self.pull(n)["labels"])
    }

    /// Open PRs, oldest first.
    pub fn open_prs(&self) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        st.pulls
            .iter()
            .filter(|p| p["state"] == "open")
            .cloned()
            .collect()
    }

    pub fn label_calls(&self) -> Vec<(u64, Vec<String>)> {
        self.state.lock().unwrap().label_calls.clone()
    }

    /// The requests outside GitHub's API description so far, taken: a test that sends them on
    /// purpose asserts on them, and the fake no longer fails the test for them when dropped.
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().violations)
    }

    /// `METHOD path[?query]` of every request so far, the query decoded with keys sorted.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests that were not GETs.
    pub fn writes(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|r| !r.starts_with("GET "))
            .cloned()
            .collect()
    }

    /// A review as GitHub stores it; `state` is the REST spelling (`APPROVED`,
    /// `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED`, `PENDING`). Later reviews are submitted
    /// later. Returns the review id.
    pub fn add_review(&self, number: u64, login: &str, state: &str, commit_sha: &str) -> u64 {
        let mut st = self.state.lock().unwrap();
        let id = st.id();
        let mut r = webhook("pull_request_review", "submitted")["review"].clone();
        r["id"] = json!(id);
        r["user"] = user(login);
        r["state"] = json!(state);
        r["commit_id"] = json!(commit_sha);
        // REST sends an empty body where a webhook may say null.
        if r["body"].is_null() {
            r["body"] = json!("");
        }
        // Ids grow by one per object; a minute apart keeps the order of the calls.
        let at = chrono::DateTime::from_timestamp(1_557_933_638 + 60 * id as i64, 0).unwrap();
        // A pending review has not been submitted: GitHub leaves the field out.
        if state == "PENDING" {
            r.as_object_mut().unwrap().remove("submitted_at");
        } else {
            r["submitted_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        r["pull_request_url"] = json!(format!(
            "https://api.github.com/repos/Codertocat/Hello-World/pulls/{number}"
        ));
        st.reviews.entry(number).or_default().push(r);
        id
    }

    /// Gives `login` a repository role (`admin`, `maintain`, `write`, `triage`, `read`, `none`);
    /// GitHub reports `maintain` as legacy `write` and `triage` as `read`.
    pub fn set_permission(&self, login: &str, role: &str) {
        let legacy = match role {
            "maintain" => "write",
            "triage" => "read",
            other => other,
        };
        self.set_custom_role(login, role, legacy);
    }

    /// A role GitHub names `role_name` with base permission `permission`.
    pub fn set_custom_role(&self, login: &str, role_name: &str, permission: &str) {
        self.state
            .lock()
            .unwrap()
            .permissions
            .insert(login.into(), (role_name.into(), permission.into()));
    }

    pub fn set_team(&self, org: &str, slug: &str, members: &[&str]) {
        self.state.lock().unwrap().teams.insert(
            (org.into(), slug.into()),
            members.iter().map(|m| m.to_string()).collect(),
        );
    }

    /// `(comment id, content, user login)` of every reaction.
    pub fn reactions(&self) -> Vec<(u64, String, String)> {
        let st = self.state.lock().unwrap();
        st.reactions
            .iter()
            .map(|(id, r)| {
                (
                    *id,
                    r["content"].as_str().unwrap().to_string(),
                    r["user"]["login"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// A check run on `sha`; `conclusion` only when `status` is `completed`. Returns its id.
    pub fn add_check_run(
        &self,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) -> u64 {
        let mut st = self.state.lock().unwrap();
        let id = st.id();
        let app = webhook("check_suite", "completed")["check_suite"]["app"].clone();
        let run = json!({
            "id": id,
            "head_sha": sha,
            "node_id": format!("CR_kwDO{id}"),
            "external_id": "",
            "url": format!("https://api.github.com/repos/Codertocat/Hello-World/check-runs/{id}"),
            "html_url": format!("https://github.com/Codertocat/Hello-World/runs/{id}"),
            "details_url": format!("https://example.com/ci/{id}"),
            "status": status,
            "conclusion": conclusion,
            "started_at": "2019-05-15T15:21:12Z",
            "completed_at": if status == "completed" { json!("2019-05-15T15:21:45Z") } else { Value::Null },
            "output": {"title": null, "summary": null, "text": null, "annotations_count": 0,
                       "annotations_url": format!("https://api.github.com/repos/Codertocat/Hello-World/check-runs/{id}/annotations")},
            "name": name,
            "check_suite": {"id": 118578147},
            "app": app,
            "pull_requests": [],
        });
        st.check_runs.entry(sha.to_string()).or_default().push(run);
        id
    }

    /// A commit status, as if some CI had posted it.
    pub fn add_status(&self, sha: &str, context: &str, state: &str) {
        self.state.lock().unwrap().statuses.push((
            sha.into(),
            json!({"state": state, "context": context, "description": null, "target_url": null}),
        ));
    }

    /// GitHub will refuse to merge the PR (405), as with conflicts or unmet branch protection.
    pub fn set_unmergeable(&self, number: u64) {
        self.state.lock().unwrap().unmergeable.push(number);
    }

    /// The obstacle is gone (the branch protection rules are met).
    pub fn set_mergeable(&self, number: u64) {
        self.state
            .lock()
            .unwrap()
            .unmergeable
            .retain(|n| *n != number);
    }

    /// The repository allows only these merge methods; the others get GitHub's 405.
    pub fn allow_merge_methods(&self, methods: &[&str]) {
        self.state.lock().unwrap().merge_methods =
            Some(methods.iter().map(|m| m.to_string()).collect());
    }

    /// Branch protection on every base: these contexts must succeed on a PR's head first.
    pub fn require_checks(&self, contexts: &[&str]) {
        self.state.lock().unwrap().required_checks =
            contexts.iter().map(|c| c.to_string()).collect();
    }

    /// `(number, merge_method, sha)` of every merge made through the API.
    pub fn merges(&self) -> Vec<(u64, String, String)> {
        self.state.lock().unwrap().merges.clone()
    }

    /// A human merges the PR in the UI.
    pub fn merge_by_human(&self, number: u64, login: &str) -> String {
        let mut st = self.state.lock().unwrap();
        let pr = st.pull_mut(number).unwrap().clone();
        let real = st.git.clone().and_then(|git| {
            let (head, base) = (pr["head"]["ref"].as_str()?, pr["base"]["ref"].as_str()?);
            git.merge(
                head,
                base,
                &format!("Merge pull request #{number} from {head}"),
            )
            .ok()
        });
        let sha = merge_pull(&mut st, number, login);
        match real {
            Some(commit) => {
                st.pull_mut(number).unwrap()["merge_commit_sha"] = json!(commit);
                commit
            }
            None => sha,
        }
    }

    /// Right after the next request with this method whose path ends with `path_suffix` was
    /// answered, `run` changes the state (once): something that happens on GitHub between two
    /// of deploybot's calls, deterministically.
    pub fn after_next(
        &self,
        method: Method,
        path_suffix: &str,
        run: impl FnOnce(&mut GhState) + Send + 'static,
    ) {
        self.state.lock().unwrap().hooks.push(Hook {
            method,
            path_suffix: path_suffix.into(),
            run: Box::new(run),
        });
    }

    /// The next request with this method whose path ends with `path_suffix` is refused with
    /// `status` and GitHub's `{"message": ...}` (and `Retry-After` when given).
    pub fn fail_next(
        &self,
        method: Method,
        path_suffix: &str,
        status: u16,
        message: &str,
        retry_after: Option<u64>,
    ) {
        self.state.lock().unwrap().failures.push(Failure {
            method,
            path_suffix: path_suffix.into(),
            status,
            message: message.into(),
            retry_after,
        });
    }
}

/// Sorted label names of a `labels` array.
pub fn label_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// A PR file object as the files API returns it.
pub fn file(
    name: &str,
    status: &str,
    additions: u32,
    deletions: u32,
    patch: Option<&str>,
) -> Value {
    let mut f = json!({
        "sha": "bbcd538c8e72b8c175046e27cc8f907076331401",
        "filename": name,
        "status": status,
        "additions": additions,
        "deletions": deletions,
        "changes": additions + deletions,
        "blob_url": format!("https://github.com/Codertocat/Hello-World/blob/x/{name}"),
        "raw_url": format!("https://github.com/Codertocat/Hello-World/raw/x/{name}"),
        "contents_url": format!("https://api.github.com/repos/Codertocat/Hello-World/contents/{name}?ref=x"),
    });
    if let Some(p) = patch {
        f["patch"] = json!(p);
    }
    f
}

/// A user object (the fixture's `sender`) with another login.
fn user(login: &str) -> Value {
    let mut u = webhook("pull_request", "opened")["sender"].clone();
    u["login"] = json!(login);
    u["url"] = json!(format!("https://api.github.com/users/{login}"));
    u["html_url"] = json!(format!("https://github.com/{login}"));
    u["type"] = json!(if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    });
    u
}

fn comment_object(st: &mut GhState, login: &str, body: &str) -> Value {
    let id = st.id();
    let mut c = webhook("issue_comment", "created")["comment"].clone();
    c["id"] = json!(id);
    c["body"] = json!(body);
    c["user"] = user(login);
    c["url"] = json!(format!(
        "https://api.github.com/repos/Codertocat/Hello-World/issues/comments/{id}"
    ));
    c
}

fn merge_pull(st: &mut GhState, number: u64, login: &str) -> String {
    let id = st.id();
    let sha = format!("{id:040x}");
    let pr = st.pull_mut(number).unwrap();
    pr["merged"] = json!(true);
    pr["state"] = json!("closed");
    pr["mergeable"] = Value::Null;
    pr["merge_commit_sha"] = json!(sha);
    pr["merged_at"] = json!("2019-05-15T16:00:00Z");
    pr["closed_at"] = json!("2019-05-15T16:00:00Z");
    pr["merged_by"] = user(login);
    sha
}

fn message(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
        })),
    )
        .into_response()
}

/// `GET /repos/{owner}/{repo}/installation`: GitHub's `installation` example with the
/// account's installation.
async fn repo_installation(State(sh): S, Path((o, _r)): Path<(String, String)>) -> Response {
    let st = sh.st.lock().unwrap();
    let Some(id) = st
        .app
        .as_ref()
        .and_then(|a| a.installations.get(&o.to_ascii_lowercase()))
    else {
        return not_found();
    };
    let mut v = app_fixture("installation.json");
    v["id"] = json!(id);
    v["account"]["login"] = json!(o);
    v["access_tokens_url"] = json!(format!(
        "http://{}/app/installations/{id}/access_tokens",
        sh.addr
    ));
    Json(v).into_response()
}

/// `POST /app/installations/{id}/access_tokens`: GitHub's `installation-token` example with a
/// new token, expiring after the App's lifetime.
async fn create_installation_token(State(sh): S, Path(id): Path<u64>) -> Response {
    let mut st = sh.st.lock().unwrap();
    let Some(app) = st.app.as_mut() else {
        return not_found();
    };
    if !app.installations.values().any(|i| *i == id) {
        return not_found();
    }
    let token = format!("ghs_{id}_{:04}", app.tokens.len() + 1);
    let expires = app.clock.now() + app.lifetime;
    app.tokens.insert(token.clone(), (id, expires));
    let v = app_fixture("installation-token.json");
    let mut v = description().conform(description().schema("installation-token"), &v);
    v["token"] = json!(token);
    v["expires_at"] = json!(expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    (StatusCode::CREATED, Json(v)).into_response()
}

/// A pull request as the REST API returns it, from a webhook's or a test's object.
fn rest_pull(pr: &Value) -> Value {
    description().conform(description().schema("pull-request"), pr)
}

fn app_fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("github-app").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found")
}

/// GitHub's REST API description (`fixtures/github/openapi/`), read once.
pub fn description() -> &'static Description {
    static D: std::sync::OnceLock<Description> = std::sync::OnceLock::new();
    D.get_or_init(|| Description::load("github/openapi/github-rest-subset.json", false))
}

/// Holds every request to GitHub's description, logs it, checks the token and serves queued
/// failures; then holds the answer to the description too.
async fn gate(State(sh): S, req: Request, next: Next) -> Response {
    let uri = req.uri().clone();
    // Every request is held to GitHub's description before anything else: an operation GitHub
    // does not have, an undeclared query parameter or a body field it does not take is a
    // violation (the test fails when the fake is dropped), answered as GitHub would.
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let api_path = uri.path().strip_prefix("/api/v3").unwrap_or(uri.path());
    let problems = description().check_request(
        parts.method.as_str(),
        api_path,
        uri.query().unwrap_or(""),
        &body,
    );
    let req = Request::from_parts(parts, axum::body::Body::from(body));
    if let Some(first) = problems.first() {
        let status = if first.contains("no such operation") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let answer = message(status, &format!("Invalid request.\n\n{first}"));
        sh.st.lock().unwrap().violations.extend(problems);
        return answer;
    }
    let mut line = format!("{} {}", req.method(), uri.path());
    if uri.query().is_some() {
        let u = reqwest::Url::parse(&format!("http://x{uri}")).unwrap();
        let mut pairs: Vec<String> = u.query_pairs().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        line = format!("{line}?{}", pairs.join("&"));
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    {
        let mut st = sh.st.lock().unwrap();
        st.requests.push(line);
        if let Some(a) = &auth {
            st.authorization.push(a.clone());
        }
        if let Some(app) = &mut st.app {
            let path = uri.path().strip_prefix("/api/v3").unwrap_or(uri.path());
            let bearer = auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or("");
            let as_app = path.starts_with("/app/") || path.ends_with("/installation");
            let checked = if as_app {
                app.valid_jwt(bearer)
            } else {
                let mut parts = path.trim_start_matches('/').split('/');
                let account = match (parts.next(), parts.next()) {
                    (Some("repos" | "orgs"), Some(a)) => Some(a),
                    _ => None,
                };
                app.valid_token(bearer, account)
            };
            if let Err(why) = checked {
                app.refused.push(format!("{} {path}: {why}", req.method()));
                let m = if as_app {
                    "A JSON web token could not be decoded"
                } else {
                    "Bad credentials"
                };
                return message(StatusCode::UNAUTHORIZED, m);
            }
        }
        if let Some(t) = &st.token {
            let a = auth.as_deref().unwrap_or("");
            if a != format!("Bearer {t}") && a != format!("token {t}") {
                return message(StatusCode::UNAUTHORIZED, "Bad credentials");
            }
        }
        let hit = st
            .failures
            .iter()
            .position(|f| f.method == req.method() && uri.path().ends_with(&f.path_suffix));
        if let Some(i) = hit {
            let f = st.failures.remove(i);
            let mut resp = message(StatusCode::from_u16(f.status).unwrap(), &f.message);
            if let Some(secs) = f.retry_after {
                resp.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            return resp;
        }
    }
    let method = req.method().clone();
    let resp = next.run(req).await;
    let resp = check_response(&sh, &method, api_path, resp).await;
    let mut st = sh.st.lock().unwrap();
    let hit = st
        .hooks
        .iter()
        .position(|h| h.method == method && uri.path().ends_with(&h.path_suffix));
    if let Some(i) = hit {
        let hook = st.hooks.remove(i);
        (hook.run)(&mut st);
    }
    resp
}

/// Holds what the fake answered to the response schema GitHub's description gives for it: a
/// field GitHub does not send, or one of the wrong type, is a violation like a bad request.
async fn check_response(sh: &Shared, method: &Method, path: &str, resp: Response) -> Response {
    let status = resp.status().as_u16();
    let Some(schema) = description().response_schema(method.as_str(), path, status) else {
        return resp;
    };
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        let mut problems = Vec::new();
        let at = format!("{method} {path} -> {status}");
        description().check_schema(schema, &v, &at, &mut problems);
        sh.st.lock().unwrap().violations.extend(problems);
    }
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// One page of `items`, with a `Link` to the next that keeps the other query parameters.
fn page(addr: SocketAddr, path: &str, q: &BTreeMap<String, String>, items: &[Value]) -> Response {
    let (slice, next) = slice(addr, path, q, items);
    let mut resp = Json(slice).into_response();
    if let Some(link) = next {
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

/// A page of `items` and the `Link` header value to the next page, if any.
fn slice(
    addr: SocketAddr,
    path: &str,
    q: &BTreeMap<String, String>,
    items: &[Value],
) -> (Vec<Value>, Option<String>) {
    let per = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30usize)
        .min(PAGE);
    let n: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let start = (n - 1) * per;
    let slice: Vec<Value> = items.iter().skip(start).take(per).cloned().collect();
    let next = (start + per < items.len()).then(|| {
        let mut u = reqwest::Url::parse(&format!("http://{addr}{path}")).unwrap();
        {
            let mut pairs = u.query_pairs_mut();
            for (k, v) in q.iter().filter(|(k, _)| *k != "page") {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("page", &(n + 1).to_string());
        }
        format!("<{u}>; rel=\"next\"")
    });
    (slice, next)
}

type Q = Query<BTreeMap<String, String>>;

async fn list_pulls(State(sh): S, Path((o, r)): Path<(String, String)>, Query(q): Q) -> Response {
    let st = sh.st.lock().unwrap();
    let state = q.get("state").map(String::as_str).unwrap_or("open");
    let items: Vec<Value> = st
        .pulls
        .iter()
        .filter(|p| state == "all" || p["state"] == state)
        .filter(|p| {
            q.get("head")
                .is_none_or(|h| p["head"]["label"] == h.as_str())
        })
        .filter(|p| q.get("base").is_none_or(|b| p["base"]["ref"] == b.as_str()))
        // Lists hold GitHub's `pull-request-simple`, not the whole pull request, whose labels
        // have a description string (empty for none).
        .map(|p| {
            let mut p = description().conform(description().schema("pull-request-simple"), p);
            for l in p["labels"].as_array_mut().into_iter().flatten() {
                if l["description"].is_null() {
                    l["description"] = json!("");
                }
            }
            p
        })
        .collect();
    page(sh.addr, &format!("/repos/{o}/{r}/pulls"), &q, &items)
}

async fn create_pull(
    State(sh): S,
    Path((owner, repo)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let (Some(title), Some(head), Some(base)) = (
        body["title"].as_str(),
        body["head"].as_str(),
        body["base"].as_str(),
    ) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "missing_field"}]}),
            ),
        )
            .into_response();
    };
    let mut st = sh.st.lock().unwrap();
    // GitHub refuses a second open PR for the same head and base.
    if st
        .pulls
        .iter()
        .any(|p| p["state"] == "open" && p["head"]["ref"] == head && p["base"]["ref"] == base)
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "code": "custom",
                            "message": format!("A pull request already exists for {owner}:{head}.")}],
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
            })),
        )
            .into_response();
    }
    let number = st
        .pulls
        .iter()
        .filter_map(|p| p["number"].as_u64())
        .max()
        .unwrap_or(0)
        + 1;
    let mut pr = webhook("pull_request", "opened")["pull_request"].clone();
    pr["number"] = json!(number);
    pr["id"] = json!(1_000_000 + number);
    pr["title"] = json!(title);
    pr["body"] = body.get("body").cloned().unwrap_or(Value::Null);
    pr["state"] = json!("open");
    pr["labels"] = json!([]);
    pr["user"] = user(BOT);
    pr["html_url"] = json!(format!("https://github.com/{owner}/{repo}/pull/{number}"));
    pr["url"] = json!(format!(
        "https://api.github.com/repos/{owner}/{repo}/pulls/{number}"
    ));
    pr["head"]["ref"] = json!(head);
    pr["head"]["label"] = json!(format!("{owner}:{head}"));
    if let Some(sha) = st.git.as_ref().and_then(|g| g.tip(head)) {
        pr["head"]["sha"] = json!(sha);
    }
    pr["base"]["ref"] = json!(base);
    pr["base"]["label"] = json!(format!("{owner}:{base}"));
    let pr = rest_pull(&pr);
    st.pulls.push(pr.clone());
    (StatusCode::CREATED, Json(pr)).into_response()
}

async fn get_pull(State(sh): S, Path((_, _, n)): Path<(String, String, u64)>) -> Response {
    let mut st = sh.st.lock().unwrap();
    let git = st.git.clone();
    match st.pull_mut(n) {
        Some(pr) => {
            // An open PR's head follows its branch, as on GitHub.
            if let (Some(git), Some(head)) = (git, pr["head"]["ref"].as_str().map(String::from))
                && pr["state"] == "open"
                && let Some(sha) = git.tip(&head)
            {
                pr["head"]["sha"] = json!(sha);
            }
            Json(pr.clone()).into_response()
        }
        None => not_found(),
    }
}

/// A list kept per PR number.
fn per_pr(
    sh: &Shared,
    (o, r, n): (String, String, u64),
    q: &BTreeMap<String, String>,
    what: &str,
    items: impl Fn(&GhState) -> Vec<Value>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    if st.pull_mut(n).is_none() {
        return not_found();
    }
    page(
        sh.addr,
        &format!("/repos/{o}/{r}/pulls/{n}/{what}"),
        q,
        &items(&st),
    )
}

async fn list_files(State(sh): S, Path(p): Path<(String, String, u64)>, Query(q): Q) -> Response {
    let n = p.2;
    per_pr(&sh, p, &q, "files", |st| {
        st.files.get(&n).cloned().unwrap_or_default()
    })
}

async fn list_commits(State(sh): S, Path(p): Path<(String, String, u64)>, Query(q): Q) -> Response {
    let n = p.2;
    per_pr(&sh, p, &q, "commits", |st| {
        st.commits.get(&n).cloned().unwrap_or_default()
    })
}

async fn list_reviews(State(sh): S, Path(p): Path<(String, String, u64)>, Query(q): Q) -> Response {
    let n = p.2;
    per_pr(&sh, p, &q, "reviews", |st| {
        st.reviews.get(&n).cloned().unwrap_or_default()
    })
}

/// GitHub's merge: 405 when not mergeable, 409 when `sha` is not the head, else a merge commit.
async fn merge(
    State(sh): S,
    Path((_, _, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    let unmergeable = st.unmergeable.contains(&n);
    let git = st.git.clone();
    let method = body["merge_method"].as_str().unwrap_or("merge").to_string();
    if !["merge", "squash", "rebase"].contains(&method.as_str()) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed",
                        "errors": [{"resource": "PullRequest", "code": "invalid", "field": "merge_method"}]})),
        )
            .into_response();
    }
    if let Some(allowed) = &st.merge_methods
        && !allowed.contains(&method)
    {
        // GitHub's words for a method the repository's settings switched off.
        let what = match method.as_str() {
            "merge" => "Merge commits are",
            "squash" => "Squash merges are",
            _ => "Rebase merges are",
        };
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{what} not allowed on this repository."),
        );
    }
    let Some(pr) = st.pull_mut(n) else {
        return not_found();
    };
    // GitHub compares `sha` with the branch as it is now, not as last listed.
    if let (Some(git), Some(head)) = (git, pr["head"]["ref"].as_str().map(String::from))
        && pr["state"] == "open"
        && let Some(sha) = git.tip(&head)
    {
        pr["head"]["sha"] = json!(sha);
    }
    if pr["merged"] == json!(true) || pr["state"] != "open" || unmergeable {
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Pull Request is not mergeable",
        );
    }
    if let Some(sha) = body["sha"].as_str()
        && pr["head"]["sha"] != sha
    {
        return message(
            StatusCode::CONFLICT,
            "Head branch was modified. Review and try the merge again.",
        );
    }
    let title = pr["title"].as_str().unwrap_or_default().to_string();
    let refs = pr["head"]["ref"]
        .as_str()
        .map(String::from)
        .zip(pr["base"]["ref"].as_str().map(String::from));
    if let Some(why) = protection_refusal(&st, n) {
        return message(StatusCode::METHOD_NOT_ALLOWED, &why);
    }
    let backed = st.git.clone().zip(refs);
    let sha = match backed {
        Some((git, (head, base))) => match git.merge_by(&method, n, &title, &head, &base) {
            Ok(commit) => {
                merge_pull(&mut st, n, BOT);
                st.pull_mut(n).unwrap()["merge_commit_sha"] = json!(commit);
                commit
            }
            Err(e) => return message(StatusCode::METHOD_NOT_ALLOWED, &e),
        },
        None => merge_pull(&mut st, n, BOT),
    };
    st.merges.push((n, method, sha.clone()));
    Json(json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}))
        .into_response()
}

/// What branch protection says against merging PR `n` now, in GitHub's words: a required
/// review, then each required check that has not succeeded on the head.
fn protection_refusal(st: &GhState, n: u64) -> Option<String> {
    if st.require_review {
        return Some(
            "At least 1 approving review is required by reviewers with write access.".into(),
        );
    }
    let pr = st.pulls.iter().find(|p| p["number"] == n)?;
    let head = pr["head"]["sha"].as_str().unwrap_or_default();
    for context in &st.required_checks {
        let status = st
            .statuses
            .iter()
            .rev()
            .find(|(sha, s)| sha == head && s["context"] == context.as_str())
            .map(|(_, s)| s["state"].as_str().unwrap_or_default().to_string());
        let run = st.check_runs.get(head).and_then(|runs| {
            runs.iter()
                .rev()
                .find(|r| r["name"] == context.as_str())
                .map(|r| r["conclusion"].as_str().unwrap_or("pending").to_string())
        });
        match status.or(run).as_deref() {
            Some("success") => {}
            Some("failure" | "error") => {
                return Some(format!("Required status check \"{context}\" is failing."));
            }
            _ => return Some(format!("Required status check \"{context}\" is expected.")),
        }
    }
    None
}

/// GitHub's "update a pull request": title, body and `state` (`open` or `closed`); answers the
/// pull request.
async fn update_pull(
    State(sh): S,
    Path((_, _, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    let Some(pr) = st.pull_mut(n) else {
        return not_found();
    };
    for key in ["title", "body"] {
        if let Some(v) = body.get(key) {
            pr[key] = v.clone();
        }
    }
    match body["state"].as_str() {
        Some("closed") if pr["state"] == "open" => {
            pr["state"] = json!("closed");
            pr["closed_at"] = json!("2019-05-15T16:30:00Z");
        }
        Some("open") if pr["merged"] != json!(true) => {
            pr["state"] = json!("open");
            pr["closed_at"] = Value::Null;
        }
        Some("open" | "closed") | None => {}
        Some(_) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"message": "Validation Failed",
                            "errors": [{"resource": "PullRequest", "code": "invalid", "field": "state"}]})),
            )
                .into_response();
        }
    }
    Json(pr.clone()).into_response()
}

/// GitHub's "delete a reference" (`heads/BRANCH`): 204, or 422 when there is no such reference.
async fn delete_ref(
    State(sh): S,
    Path((_, _, reference)): Path<(String, String, String)>,
) -> Response {
    let st = sh.st.lock().unwrap();
    let deleted = st.git.as_ref().is_some_and(|git| {
        git.git(&["rev-parse", "--verify", &format!("refs/{reference}")])
            .is_ok()
            && git
                .git(&["update-ref", "-d", &format!("refs/{reference}")])
                .is_ok()
    });
    if deleted {
        StatusCode::NO_CONTENT.into_response()
    } else {
        message(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist")
    }
}

async fn list_comments(
    State(sh): S,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Q,
) -> Response {
    let st = sh.st.lock().unwrap();
    let items: Vec<Value> = st
        .comments
        .iter()
        .filter(|(on, _)| *on == n)
        .map(|(_, c)| c.clone())
        .collect();
    page(
        sh.addr,
        &format!("/repos/{o}/{r}/issues/{n}/comments"),
        &q,
        &items,
    )
}

async fn create_comment(
    State(sh): S,
    Path((_, _, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    let c = comment_object(&mut st, BOT, body["body"].as_str().unwrap());
    st.comments.push((n, c.clone()));
    (StatusCode::CREATED, Json(c)).into_response()
}

async fn update_comment(
    State(sh): S,
    Path((_, _, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    match st.comments.iter_mut().find(|(_, c)| c["id"] == json!(id)) {
        Some((_, c)) if c["user"]["login"] == BOT => {
            c["body"] = body["body"].clone();
            c["updated_at"] = json!("2019-05-15T16:00:00Z");
            Json(c.clone()).into_response()
        }
        Some(_) => message(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        ),
        None => not_found(),
    }
}

/// 201 for a new reaction, 200 with the existing one when the bot already reacted so.
async fn create_reaction(
    State(sh): S,
    Path((_, _, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    const CONTENTS: [&str; 8] = [
        "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
    ];
    let mut st = sh.st.lock().unwrap();
    let content = body["content"].as_str().unwrap_or("");
    if !CONTENTS.contains(&content) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed",
                        "errors": [{"resource": "Reaction", "code": "invalid", "field": "content"}]})),
        )
            .into_response();
    }
    if !st.comments.iter().any(|(_, c)| c["id"] == json!(id)) {
        return not_found();
    }
    if let Some((_, r)) = st
        .reactions
        .iter()
        .find(|(on, r)| *on == id && r["content"] == content && r["user"]["login"] == BOT)
    {
        return Json(r.clone()).into_response();
    }
    let rid = st.id();
    let r = json!({
        "id": rid,
        "node_id": format!("REA_lALO{rid}"),
        "user": user(BOT),
        "content": content,
        "created_at": "2019-05-15T16:00:00Z",
    });
    st.reactions.push((id, r.clone()));
    (StatusCode::CREATED, Json(r)).into_response()
}

async fn get_label(State(sh): S, Path((_, _, name)): Path<(String, String, String)>) -> Response {
    let st = sh.st.lock().unwrap();
    match st.repo_labels.get(&name) {
        Some(l) => Json(l.clone()).into_response(),
        None => not_found(),
    }
}

fn label_object(
    st: &mut GhState,
    o: &str,
    r: &str,
    name: &str,
    color: &Value,
    description: &Value,
) -> Value {
    let id = st.id();
    json!({
        "id": id, "node_id": "MDU6TGFiZWwxMzYyOTM0Mzg5",
        "url": format!("https://api.github.com/repos/{o}/{r}/labels/{name}"),
        "name": name, "color": color, "default": false, "description": description,
    })
}

async fn create_label(
    State(sh): S,
    Path((o, r)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    let name = body["name"].as_str().unwrap().to_string();
    if st.repo_labels.contains_key(&name) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": "Validation Failed", "errors": [{"resource": "Label", "code": "already_exists", "field": "name"}]}))).into_response();
    }
    let l = label_object(&mut st, &o, &r, &name, &body["color"], &body["description"]);
    st.repo_labels.insert(name, l.clone());
    (StatusCode::CREATED, Json(l)).into_response()
}

/// Like GitHub, a label the repository lacks is created on the fly, with the default colour
/// `ededed` and no description.
async fn add_labels(
    State(sh): S,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    let names: Vec<String> = body["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if st.pull_mut(n).is_none() {
        return not_found();
    }
    for name in &names {
        let l = match st.repo_labels.get(name) {
            Some(l) => l.clone(),
            None => {
                let l = label_object(&mut st, &o, &r, name, &json!("ededed"), &Value::Null);
                st.repo_labels.insert(name.clone(), l.clone());
                l
            }
        };
        let pr = st.pull_mut(n).unwrap();
        let labels = pr["labels"].as_array_mut().unwrap();
        if !labels.iter().any(|x| x["name"] == json!(name)) {
            labels.push(l);
        }
    }
    st.label_calls.push((n, names));
    let labels = st.pull_mut(n).unwrap()["labels"].clone();
    Json(labels).into_response()
}

async fn remove_label(
    State(sh): S,
    Path((_, _, n, name)): Path<(String, String, u64, String)>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    let Some(pr) = st.pull_mut(n) else {
        return not_found();
    };
    let labels = pr["labels"].as_array_mut().unwrap();
    let before = labels.len();
    labels.retain(|l| l["name"] != json!(name));
    if labels.len() == before {
        return message(StatusCode::NOT_FOUND, "Label does not exist");
    }
    Json(pr["labels"].clone()).into_response()
}

fn status_object(id: u64, o: &str, r: &str, sha: &str, posted: &Value) -> Value {
    let mut s = posted.clone();
    s["id"] = json!(id);
    s["node_id"] = json!(format!("SC_kwDO{id}"));
    s["url"] = json!(format!(
        "https://api.github.com/repos/{o}/{r}/statuses/{sha}"
    ));
    s["avatar_url"] = json!("https://avatars.githubusercontent.com/u/21031067?v=4");
    s["created_at"] = json!("2019-05-15T15:20:30Z");
    s["updated_at"] = json!("2019-05-15T15:20:30Z");
    // GitHub answers every field, null when it was not posted.
    for key in ["target_url", "description"] {
        if s.get(key).is_none() {
            s[key] = Value::Null;
        }
    }
    if s.get("creator").is_none() {
        s["creator"] = user(BOT);
    }
    s
}

async fn create_status(
    State(sh): S,
    Path((o, r, sha)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = sh.st.lock().unwrap();
    let id = st.id();
    st.statuses.push((sha.clone(), body.clone()));
    let mut s = status_object(id, &o, &r, &sha, &body);
    s["creator"] = user(BOT);
    (StatusCode::CREATED, Json(s)).into_response()
}

/// The latest status per context, and GitHub's combined state over them.
async fn combined_status(
    State(sh): S,
    Path((o, r, sha)): Path<(String, String, String)>,
    Query(q): Q,
) -> Response {
    let st = sh.st.lock().unwrap();
    let mut latest: Vec<Value> = Vec::new();
    for (i, (_, s)) in st
        .statuses
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, (on, _))| *on == sha)
    {
        if !latest.iter().any(|l| l["context"] == s["context"]) {
            latest.push(status_object(i as u64 + 1, &o, &r, &sha, s));
        }
    }
    let state_of = |want: &[&str]| latest.iter().any(|s| want.iter().any(|w| s["state"] == *w));
    let state = if state_of(&["failure", "error"]) {
        "failure"
    } else if latest.is_empty() || state_of(&["pending"]) {
        "pending"
    } else {
        "success"
    };
    let path = format!("/repos/{o}/{r}/commits/{sha}/status");
    let (statuses, next) = slice(sh.addr, &path, &q, &latest);
    // The combined status lists each as GitHub's `simple-commit-status` (no `creator`).
    let statuses: Vec<Value> = statuses
        .iter()
        .map(|s| description().conform(description().schema("simple-commit-status"), s))
        .collect();
    let mut resp = Json(json!({
        "state": state,
        "statuses": statuses,
        "sha": sha,
        "total_count": latest.len(),
        "commit_url": format!("https://api.github.com/repos/{o}/{r}/commits/{sha}"),
        "url": format!("https://api.github.com/repos/{o}/{r}/commits/{sha}/status"),
        "repository": description().conform(
            description().schema("minimal-repository"),
            &webhook("pull_request", "opened")["repository"],
        ),
    }))
    .into_response();
    if let Some(link) = next {
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

async fn list_check_runs(
    State(sh): S,
    Path((o, r, sha)): Path<(String, String, String)>,
    Query(q): Q,
) -> Response {
    let st = sh.st.lock().unwrap();
    let runs = st.check_runs.get(&sha).cloned().unwrap_or_default();
    let path = format!("/repos/{o}/{r}/commits/{sha}/check-runs");
    let (page, next) = slice(sh.addr, &path, &q, &runs);
    let mut resp = Json(json!({"total_count": runs.len(), "check_runs": page})).into_response();
    if let Some(link) = next {
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

/// 404 for someone who is not a collaborator.
async fn permission(State(sh): S, Path((_, _, login)): Path<(String, String, String)>) -> Response {
    let st = sh.st.lock().unwrap();
    let Some((role, legacy)) = st.permissions.get(&login) else {
        return not_found();
    };
    let mut u = user(&login);
    let at_least = |p: &str| {
        let rank = |x: &str| {
            ["none", "read", "write", "admin"]
                .iter()
                .position(|y| *y == x)
        };
        rank(legacy) >= rank(p)
    };
    u["permissions"] = json!({
        "admin": at_least("admin"), "maintain": role == "maintain" || at_least("admin"),
        "push": at_least("write"), "triage": role == "triage" || at_least("write"),
        "pull": at_least("read"),
    });
    u["role_name"] = json!(role);
    Json(json!({"permission": legacy, "role_name": role, "user": u})).into_response()
}

async fn team_members(
    State(sh): S,
    Path((org, slug)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let st = sh.st.lock().unwrap();
    let Some(members) = st.teams.get(&(org.clone(), slug.clone())) else {
        return not_found();
    };
    let users: Vec<Value> = members.iter().map(|m| user(m)).collect();
    page(
        sh.addr,
        &format!("/orgs/{org}/teams/{slug}/members"),
        &q,
        &users,
    )
}
