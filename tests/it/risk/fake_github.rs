//! A fake GitHub REST API (axum on 127.0.0.1:0) for the pull-request flow. Objects are built
//! from the real webhook payloads in ../shared/fixtures/github-webhooks (the PR, comment, user and
//! label shapes), lists are paginated with a real `Link` header, and every write is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::{Value, json};

use crate::support::shared_dir;

/// Largest page the fake serves, small so that pagination is exercised.
const PAGE: usize = 2;

pub fn webhook(event: &str, action: &str) -> Value {
    let path = shared_dir().join(format!(
        "fixtures/github-webhooks/{event}/{action}.payload.json"
    ));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[derive(Default)]
pub struct GhState {
    pub pr: Value,
    pub files: Vec<Value>,
    pub commits: Vec<Value>,
    pub comments: Vec<Value>,
    pub repo_labels: BTreeMap<String, Value>,
    pub statuses: Vec<(String, Value)>,
    /// "METHOD path" of every write.
    pub writes: Vec<String>,
    pub authorization: Vec<String>,
    /// The next N comment creations are refused with a secondary rate limit (403, Retry-After).
    pub rate_limit_next: u32,
    pub retry_after: u64,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeGithub {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<GhState>>,
}

type S = State<(Arc<Mutex<GhState>>, SocketAddr)>;

impl FakeGithub {
    /// Serves the `pull_request` object of `payload` (a real webhook delivery).
    pub async fn start(payload: &Value) -> FakeGithub {
        let mut st = GhState {
            pr: payload["pull_request"].clone(),
            next_id: 1_000,
            ..GhState::default()
        };
        // The label shape GitHub returns, from the payload's own labels.
        for l in st.pr["labels"].as_array().cloned().unwrap_or_default() {
            st.repo_labels
                .insert(l["name"].as_str().unwrap().to_string(), l);
        }
        let state = Arc::new(Mutex::new(st));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/repos/{o}/{r}/pulls/{n}", get(get_pr))
            .route("/repos/{o}/{r}/pulls/{n}/files", get(list_files))
            .route("/repos/{o}/{r}/pulls/{n}/commits", get(list_commits))
            .route(
                "/repos/{o}/{r}/issues/{n}/comments",
                get(list_comments).post(create_comment),
            )
            .route("/repos/{o}/{r}/issues/comments/{id}", patch(update_comment))
            .route("/repos/{o}/{r}/labels/{name}", get(get_label))
            .route("/repos/{o}/{r}/labels", post(create_label))
            .route("/repos/{o}/{r}/issues/{n}/labels", post(add_labels))
            .route(
                "/repos/{o}/{r}/issues/{n}/labels/{name}",
                delete(remove_label),
            )
            .route("/repos/{o}/{r}/statuses/{sha}", post(create_status))
            .with_state((state.clone(), addr));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGithub { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the PR's files (with their patches) and moves its head.
    pub fn push(&self, head_sha: &str, files: Vec<Value>, messages: &[&str]) {
        let mut st = self.state.lock().unwrap();
        st.pr["head"]["sha"] = json!(head_sha);
        st.pr["changed_files"] = json!(files.len());
        st.files = files;
        st.commits = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                json!({
                    "sha": format!("{head_sha}{i}"),
                    "commit": {"message": m, "author": {"name": "Codertocat", "email": "c@example.com", "date": "2019-05-15T15:20:30Z"}},
                    "author": st.pr["user"].clone(),
                })
            })
            .collect();
    }

    /// A comment written by someone else.
    pub fn add_foreign_comment(&self, login: &str, body: &str) {
        let mut st = self.state.lock().unwrap();
        let c = comment_object(&mut st, login, body);
        st.comments.push(c);
    }

    pub fn comments(&self) -> Vec<Value> {
        self.state.lock().unwrap().comments.clone()
    }

    pub fn pr_labels(&self) -> Vec<String> {
        label_names(&self.state.lock().unwrap().pr["labels"])
    }
}

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

fn comment_object(st: &mut GhState, login: &str, body: &str) -> Value {
    st.next_id += 1;
    let mut c = webhook("issue_comment", "created")["comment"].clone();
    c["id"] = json!(st.next_id);
    c["body"] = json!(body);
    c["user"]["login"] = json!(login);
    c["user"]["type"] = json!(if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    });
    c["url"] = json!(format!(
        "https://api.github.com/repos/Codertocat/Hello-World/issues/comments/{}",
        st.next_id
    ));
    c
}

fn record(st: &mut GhState, headers: &HeaderMap, what: String) {
    st.writes.push(what);
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        st.authorization.push(a.to_string());
    }
}

fn page(addr: SocketAddr, path: &str, items: &[Value], q: &BTreeMap<String, String>) -> Response {
    let per = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30usize)
        .min(PAGE);
    let n: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let start = (n - 1) * per;
    let slice: Vec<Value> = items.iter().skip(start).take(per).cloned().collect();
    let mut resp = axum::Json(slice).into_response();
    if start + per < items.len() {
        let next = format!(
            "<http://{addr}{path}?per_page={per}&page={}>; rel=\"next\"",
            n + 1
        );
        resp.headers_mut().insert("link", next.parse().unwrap());
    }
    resp
}

async fn get_pr(State((s, _)): S, headers: HeaderMap) -> Response {
    let mut st = s.lock().unwrap();
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        st.authorization.push(a.to_string());
    }
    axum::Json(st.pr.clone()).into_response()
}

async fn list_files(
    State((s, addr)): S,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let st = s.lock().unwrap();
    page(
        addr,
        &format!("/repos/{o}/{r}/pulls/{n}/files"),
        &st.files,
        &q,
    )
}

async fn list_commits(
    State((s, addr)): S,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let st = s.lock().unwrap();
    page(
        addr,
        &format!("/repos/{o}/{r}/pulls/{n}/commits"),
        &st.commits,
        &q,
    )
}

async fn list_comments(
    State((s, addr)): S,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let st = s.lock().unwrap();
    page(
        addr,
        &format!("/repos/{o}/{r}/issues/{n}/comments"),
        &st.comments,
        &q,
    )
}

async fn create_comment(
    State((s, _)): S,
    headers: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    record(
        &mut st,
        &headers,
        format!("POST /repos/{o}/{r}/issues/{n}/comments"),
    );
    if st.rate_limit_next > 0 {
        st.rate_limit_next -= 1;
        let mut resp = (
            StatusCode::FORBIDDEN,
            axum::Json(json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
            })),
        )
            .into_response();
        resp.headers_mut()
            .insert("retry-after", st.retry_after.to_string().parse().unwrap());
        return resp;
    }
    let c = comment_object(&mut st, "deploybot[bot]", body["body"].as_str().unwrap());
    st.comments.push(c.clone());
    (StatusCode::CREATED, axum::Json(c)).into_response()
}

async fn update_comment(
    State((s, _)): S,
    headers: HeaderMap,
    Path((o, r, id)): Path<(String, String, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    record(
        &mut st,
        &headers,
        format!("PATCH /repos/{o}/{r}/issues/comments/{id}"),
    );
    match st.comments.iter_mut().find(|c| c["id"] == json!(id)) {
        Some(c) if c["user"]["login"] == json!("deploybot[bot]") => {
            c["body"] = body["body"].clone();
            c["updated_at"] = json!("2019-05-15T16:00:00Z");
            axum::Json(c.clone()).into_response()
        }
        Some(_) => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "Resource not accessible by integration"})),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response(),
    }
}

async fn get_label(
    State((s, _)): S,
    Path((_, _, name)): Path<(String, String, String)>,
) -> Response {
    let st = s.lock().unwrap();
    match st.repo_labels.get(&name) {
        Some(l) => axum::Json(l.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/issues/labels#get-a-label"}))).into_response(),
    }
}

async fn create_label(
    State((s, _)): S,
    headers: HeaderMap,
    Path((o, r)): Path<(String, String)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    record(
        &mut st,
        &headers,
        format!(
            "POST /repos/{o}/{r}/labels {}",
            body["name"].as_str().unwrap()
        ),
    );
    let name = body["name"].as_str().unwrap().to_string();
    if st.repo_labels.contains_key(&name) {
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"message": "Validation Failed", "errors": [{"resource": "Label", "code": "already_exists", "field": "name"}]}))).into_response();
    }
    st.next_id += 1;
    let l = json!({
        "id": st.next_id, "node_id": "MDU6TGFiZWwxMzYyOTM0Mzg5",
        "url": format!("https://api.github.com/repos/{o}/{r}/labels/{name}"),
        "name": name, "color": body["color"], "default": false, "description": body["description"],
    });
    st.repo_labels.insert(name, l.clone());
    (StatusCode::CREATED, axum::Json(l)).into_response()
}

async fn add_labels(
    State((s, _)): S,
    headers: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    record(
        &mut st,
        &headers,
        format!("POST /repos/{o}/{r}/issues/{n}/labels"),
    );
    for name in body["labels"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        // GitHub would create a missing label silently with a default colour; deploybot must
        // have created it first, so the fake insists.
        let Some(l) = st.repo_labels.get(name).cloned() else {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({"message": format!("label {name} was not created first")})),
            )
                .into_response();
        };
        let present = st.pr["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == json!(name));
        if !present {
            st.pr["labels"].as_array_mut().unwrap().push(l);
        }
    }
    axum::Json(st.pr["labels"].clone()).into_response()
}

async fn remove_label(
    State((s, _)): S,
    headers: HeaderMap,
    Path((o, r, n, name)): Path<(String, String, u64, String)>,
) -> Response {
    let mut st = s.lock().unwrap();
    record(
        &mut st,
        &headers,
        format!("DELETE /repos/{o}/{r}/issues/{n}/labels/{name}"),
    );
    let labels = st.pr["labels"].as_array_mut().unwrap();
    let before = labels.len();
    labels.retain(|l| l["name"] != json!(name));
    if labels.len() == before {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Label does not exist"})),
        )
            .into_response();
    }
    axum::Json(st.pr["labels"].clone()).into_response()
}

async fn create_status(
    State((s, _)): S,
    headers: HeaderMap,
    Path((o, r, sha)): Path<(String, String, String)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    record(
        &mut st,
        &headers,
        format!("POST /repos/{o}/{r}/statuses/{sha}"),
    );
    st.next_id += 1;
    let mut status = body.clone();
    status["id"] = json!(st.next_id);
    status["url"] = json!(format!(
        "https://api.github.com/repos/{o}/{r}/statuses/{sha}"
    ));
    status["created_at"] = json!("2019-05-15T15:20:30Z");
    status["updated_at"] = json!("2019-05-15T15:20:30Z");
    st.statuses.push((sha, body));
    (StatusCode::CREATED, axum::Json(status)).into_response()
}
