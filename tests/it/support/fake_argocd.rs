//! A fake Argo CD API for the tests, held to Argo CD's own API description
//! (`fixtures/argocd/openapi/argocd-api-subset.json`, cut from upstream `assets/swagger.json`):
//! every request must be an operation of the description with only the query parameters it
//! declares, and every Application it serves must have only the fields `v1alpha1Application`
//! declares, with their types. A request or response outside the description is recorded as a
//! violation, which the tests assert to be empty.
//!
//! An Application either answers from a script (status code and body, the last one repeating)
//! or reports the tip of a branch of a real bare repository as synced and healthy, as Argo CD
//! does with auto-sync on a branch that others commit to as well.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::Value;

/// How one Application answers.
pub enum App {
    /// These responses in order; the last one repeats.
    Script {
        responses: Vec<(u16, String)>,
        served: usize,
    },
    /// The tip of `branch` in the bare repository `git_dir`, synced and healthy. With
    /// `third_writer` (a clone of it), someone else first commits an unrelated file on top, so
    /// the revision reported is always a later commit than any deploybot made.
    Tip {
        git_dir: PathBuf,
        branch: String,
        third_writer: Option<PathBuf>,
    },
}

/// Someone else's commit of an unrelated file on `branch`, made from the clone `clone`. A push
/// that loses a race with deploybot's is left out: the next request commits again.
fn third_writer_commits(clone: &std::path::Path, branch: &str) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(clone)
            .args([
                "-c",
                "user.name=Third Writer",
                "-c",
                "user.email=third@example.com",
            ])
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !(git(&["fetch", "-q", "origin", branch]) && git(&["reset", "-q", "--hard", "FETCH_HEAD"])) {
        return;
    }
    let n = std::fs::read_dir(clone.join("apps/payments"))
        .map(|d| d.count())
        .unwrap_or(0);
    std::fs::create_dir_all(clone.join("apps/payments")).unwrap();
    std::fs::write(
        clone.join(format!("apps/payments/config-{n}.yaml")),
        format!("revision: {n}\n"),
    )
    .unwrap();
    let _ = git(&["add", "-A"])
        && git(&["commit", "-q", "-m", &format!("payments: config {n}")])
        && git(&["push", "-q", "origin", &format!("HEAD:{branch}")]);
}

#[derive(Default)]
pub struct Fake {
    pub token: String,
    pub apps: HashMap<String, App>,
    /// `name?query` of every request for an Application, in order.
    pub requests: Vec<String>,
    /// Requests and responses the API description does not allow.
    pub violations: Vec<String>,
}

pub struct FakeArgoCd {
    pub url: String,
    pub state: Arc<Mutex<Fake>>,
}

impl FakeArgoCd {
    /// The requests for Application `name`, as `name?query`.
    pub fn requests_for(&self, name: &str) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|r| r.split('?').next() == Some(name))
            .cloned()
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

/// The API description, read once.
fn description() -> &'static super::openapi::Description {
    static D: std::sync::OnceLock<super::openapi::Description> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let path = super::fixtures_dir().join("argocd/openapi/argocd-api-subset.json");
        super::openapi::Description::new(
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap(),
        )
    })
}

/// Why `GET path?query` is not an operation of the description, if it is not: the shared
/// OpenAPI check (`support::openapi`), which the fake GitHub uses too.
fn check_request(path: &str, query: &str) -> Option<String> {
    description()
        .check("GET", path, query, b"")
        .into_iter()
        .next()
}

/// The fields of `value` that the schema `schema` does not declare, or whose type differs.
fn check_schema(schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/definitions/");
            &description().doc()["definitions"][name]
        }
        None => schema,
    };
    match (schema["type"].as_str(), value) {
        (Some("object") | None, Value::Object(fields)) => {
            for (k, v) in fields {
                if let Some(p) = schema["properties"].get(k) {
                    check_schema(p, v, &format!("{at}.{k}"), problems);
                } else if let Some(extra) = schema.get("additionalProperties") {
                    check_schema(extra, v, &format!("{at}.{k}"), problems);
                } else {
                    problems.push(format!("{at}.{k}: not a field of the schema"));
                }
            }
        }
        (Some("array"), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                check_schema(&schema["items"], v, &format!("{at}[{i}]"), problems);
            }
        }
        (Some("string"), Value::String(_))
        | (Some("boolean"), Value::Bool(_))
        | (Some("integer" | "number"), Value::Number(_))
        // int64 fields are strings in Argo CD's JSON (grpc-gateway).
        | (Some("integer"), Value::String(_)) => {}
        (want, got) => problems.push(format!("{at}: expected {want:?}, got {got}")),
    }
}

/// The fields of an Application body the schema does not allow.
pub fn application_problems(body: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let schema = serde_json::json!({ "$ref": "#/definitions/v1alpha1Application" });
        check_schema(&schema, &v, "Application", &mut problems);
    }
    problems
}

/// The fixture Application (`fixtures/argocd/application-synced-healthy.json`).
pub fn healthy() -> String {
    std::fs::read_to_string(super::fixtures_dir().join("argocd/application-synced-healthy.json"))
        .unwrap()
}

/// The fixture Application named `name`, synced and healthy at `revision`.
pub fn synced_at(name: &str, revision: &str) -> String {
    let mut v: Value = serde_json::from_str(&healthy()).unwrap();
    v["metadata"]["name"] = Value::from(name);
    v["status"]["sync"]["revision"] = Value::from(revision);
    v["status"]["operationState"]["operation"]["sync"]["revision"] = Value::from(revision);
    v["status"]["operationState"]["syncResult"]["revision"] = Value::from(revision);
    v.to_string()
}

fn tip(git_dir: &std::path::Path, branch: &str) -> String {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["rev-parse", branch])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn application(
    State(fake): State<Arc<Mutex<Fake>>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let query = query.unwrap_or_default();
    let mut f = fake.lock().unwrap();
    if let Some(v) = check_request(&format!("/api/v1/applications/{name}"), &query) {
        f.violations.push(v.clone());
        return (StatusCode::BAD_REQUEST, v);
    }
    let bearer = format!("Bearer {}", f.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid session","code":16,"message":"invalid session"}"#.into(),
        );
    }
    f.requests.push(format!("{name}?{query}"));
    let (code, body) = match f.apps.get_mut(&name) {
        None => (
            404,
            format!(r#"{{"error":"applications.argoproj.io \"{name}\" not found","code":5}}"#),
        ),
        Some(App::Script { responses, served }) => {
            let i = (*served).min(responses.len() - 1);
            *served += 1;
            responses[i].clone()
        }
        Some(App::Tip {
            git_dir,
            branch,
            third_writer,
        }) => {
            if let Some(clone) = third_writer {
                third_writer_commits(clone, branch);
            }
            (200, synced_at(&name, &tip(git_dir, branch)))
        }
    };
    if code == 200 {
        let problems = application_problems(&body);
        f.violations.extend(problems);
    }
    (StatusCode::from_u16(code).unwrap(), body)
}

/// Any other method or path: deploybot asked for an operation the fake does not serve, which is
/// a violation whether or not Argo CD has it (the fake would otherwise answer what Argo CD
/// would not).
async fn outside_the_description(
    State(fake): State<Arc<Mutex<Fake>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> (StatusCode, String) {
    let v = format!("{method} {uri}: not an operation deploybot may use");
    fake.lock().unwrap().violations.push(v.clone());
    (StatusCode::NOT_FOUND, v)
}

/// Serves `apps` with bearer token `token` on a local port.
pub async fn serve(token: &str, apps: Vec<(&str, App)>) -> FakeArgoCd {
    let state = Arc::new(Mutex::new(Fake {
        token: token.to_string(),
        apps: apps.into_iter().map(|(n, a)| (n.to_string(), a)).collect(),
        ..Fake::default()
    }));
    let app = Router::new()
        .route("/api/v1/applications/{name}", get(application))
        .fallback(outside_the_description)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeArgoCd {
        url: format!("http://{addr}"),
        state,
    }
}

#[test]
fn the_fake_holds_requests_and_bodies_to_the_description() {
    assert_eq!(
        check_request("/api/v1/applications/checkout-staging", "refresh=normal"),
        None
    );
    assert!(
        check_request("/api/v1/applications/checkout-staging", "fresh=1")
            .unwrap()
            .contains("\"fresh\" is not declared")
    );
    assert!(check_request("/api/v2/apps/x", "").is_some());
    assert!(
        check_request("/api/v1/applications", "").is_none(),
        "List is described"
    );
    assert_eq!(application_problems(&healthy()), Vec::<String>::new());
    let bad = healthy().replace("\"sourceType\"", "\"sourceKind\"");
    assert_eq!(
        application_problems(&bad),
        ["Application.status.sourceKind: not a field of the schema"]
    );
}

#[tokio::test]
async fn an_operation_the_fake_does_not_serve_is_a_violation() {
    let fake = serve("t", vec![]).await;
    let http = reqwest::Client::new();
    let sync = http
        .post(format!("{}/api/v1/applications/x/sync", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 404);
    let odd = http
        .get(format!("{}/api/v1/applications/x?fresh=1", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 400);
    let v = fake.violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(
        v[0].starts_with("POST /api/v1/applications/x/sync"),
        "{v:?}"
    );
}
