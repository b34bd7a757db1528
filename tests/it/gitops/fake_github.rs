//! A fake of the three GitHub REST endpoints PR mode uses, on 127.0.0.1:0. Responses are built
//! from the real `pull_request` and `label` objects in ../shared/fixtures/github-webhooks (the
//! REST and webhook shapes of a pull request are the same object), so octocrab deserializes
//! what GitHub really sends. Requests are recorded for assertions.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Default)]
pub struct Recorded {
    pub prs: Vec<Value>,
    /// `(number, labels)` per labels call.
    pub label_calls: Vec<(u64, Vec<String>)>,
    /// `METHOD path?query` of every request.
    pub requests: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    token: String,
    state: Arc<Mutex<Recorded>>,
    pr_template: Value,
    label_template: Value,
}

pub struct FakeGitHub {
    pub base: String,
    pub state: Arc<Mutex<Recorded>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fixture(path: &str) -> Value {
    let p = crate::support::shared_dir()
        .join("fixtures/github-webhooks")
        .join(path);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

impl FakeGitHub {
    pub async fn start(token: &str) -> FakeGitHub {
        let fake = Fake {
            token: token.to_string(),
            state: Arc::default(),
            pr_template: fixture("pull_request/opened.payload.json")["pull_request"].clone(),
            label_template: fixture("pull_request/labeled.payload.json")["label"].clone(),
        };
        let state = fake.state.clone();
        let app = axum::Router::new()
            .route("/repos/{owner}/{repo}/pulls", get(list).post(create))
            .route("/repos/{owner}/{repo}/issues/{number}/labels", post(labels))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGitHub { base, state, task }
    }

    pub fn open_prs(&self) -> Vec<Value> {
        self.state.lock().unwrap().prs.clone()
    }

    pub fn label_calls(&self) -> Vec<(u64, Vec<String>)> {
        self.state.lock().unwrap().label_calls.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

type Reply = (StatusCode, Json<Value>);

fn authorized(f: &Fake, headers: &HeaderMap) -> Result<(), Reply> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = auth == format!("Bearer {}", f.token) || auth == format!("token {}", f.token);
    if ok {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401"
            })),
        ))
    }
}

fn record(f: &Fake, line: String) {
    f.state.lock().unwrap().requests.push(line);
}

async fn list(
    State(f): State<Fake>,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Reply {
    let mut query: Vec<_> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.sort();
    record(
        &f,
        format!("GET /repos/{owner}/{repo}/pulls?{}", query.join("&")),
    );
    if let Err(e) = authorized(&f, &headers) {
        return e;
    }
    let st = f.state.lock().unwrap();
    let state = q.get("state").map(String::as_str).unwrap_or("open");
    let items: Vec<Value> = st
        .prs
        .iter()
        .filter(|p| state == "all" || p["state"] == state)
        .filter(|p| {
            q.get("head")
                .is_none_or(|h| p["head"]["label"] == h.as_str())
        })
        .filter(|p| q.get("base").is_none_or(|b| p["base"]["ref"] == b.as_str()))
        .cloned()
        .collect();
    (StatusCode::OK, Json(Value::Array(items)))
}

async fn create(
    State(f): State<Fake>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    record(&f, format!("POST /repos/{owner}/{repo}/pulls"));
    if let Err(e) = authorized(&f, &headers) {
        return e;
    }
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
        );
    };
    let mut st = f.state.lock().unwrap();
    // GitHub refuses a second open PR for the same head and base.
    if st
        .prs
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
        );
    }
    let number = st.prs.len() as u64 + 1;
    let mut pr = f.pr_template.clone();
    pr["number"] = json!(number);
    pr["id"] = json!(1_000_000 + number);
    pr["title"] = json!(title);
    pr["body"] = body.get("body").cloned().unwrap_or(Value::Null);
    pr["state"] = json!("open");
    pr["labels"] = json!([]);
    pr["html_url"] = json!(format!("https://github.com/{owner}/{repo}/pull/{number}"));
    pr["url"] = json!(format!(
        "https://api.github.com/repos/{owner}/{repo}/pulls/{number}"
    ));
    pr["head"]["ref"] = json!(head);
    pr["head"]["label"] = json!(format!("{owner}:{head}"));
    pr["base"]["ref"] = json!(base);
    pr["base"]["label"] = json!(format!("{owner}:{base}"));
    st.prs.push(pr.clone());
    (StatusCode::CREATED, Json(pr))
}

async fn labels(
    State(f): State<Fake>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    record(
        &f,
        format!("POST /repos/{owner}/{repo}/issues/{number}/labels"),
    );
    if let Err(e) = authorized(&f, &headers) {
        return e;
    }
    let names: Vec<String> = body["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut st = f.state.lock().unwrap();
    let Some(pr) = st.prs.iter_mut().find(|p| p["number"] == number) else {
        return (
            StatusCode::NOT_FOUND,
            Json(
                json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
            ),
        );
    };
    let mut all: Vec<Value> = pr["labels"].as_array().cloned().unwrap_or_default();
    for n in &names {
        if !all.iter().any(|l| l["name"] == n.as_str()) {
            let mut l = f.label_template.clone();
            l["name"] = json!(n);
            l["url"] = json!(format!(
                "https://api.github.com/repos/{owner}/{repo}/labels/{n}"
            ));
            l["default"] = json!(false);
            all.push(l);
        }
    }
    pr["labels"] = Value::Array(all.clone());
    st.label_calls.push((number, names));
    (StatusCode::OK, Json(Value::Array(all)))
}
