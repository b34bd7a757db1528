//! The Argo CD adapter against a local fake Argo CD API that serves the real Application JSON
//! shape (fixtures/argocd), checks the bearer token and records refresh requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use deploybot::adapters::argocd::{ArgoCdClient, SyncProgress, WaitError, sync_progress};
use deploybot_core::secret::Secret;

const REV: &str = "9f1c2e7d4b3a59e8c1d2f3a4b5c6d7e8f9a0b1c2";

#[derive(Default)]
struct Fake {
    /// Responses served in order for `checkout-production`; the last one repeats.
    script: Vec<(u16, String)>,
    served: usize,
    refreshes: Vec<String>,
}

async fn application(
    State(fake): State<Arc<Mutex<Fake>>>,
    Path(name): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer argo-t0ken") {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid session","code":16,"message":"invalid session"}"#.into(),
        );
    }
    if name != "checkout-production" {
        return (
            StatusCode::NOT_FOUND,
            format!(r#"{{"error":"applications.argoproj.io \"{name}\" not found","code":5}}"#),
        );
    }
    let mut f = fake.lock().unwrap();
    if let Some(r) = q.get("refresh") {
        f.refreshes.push(r.clone());
    }
    let i = f.served.min(f.script.len() - 1);
    f.served += 1;
    let (code, body) = f.script[i].clone();
    (StatusCode::from_u16(code).unwrap(), body)
}

async fn serve(script: Vec<(u16, String)>) -> (String, Arc<Mutex<Fake>>) {
    let fake = Arc::new(Mutex::new(Fake {
        script,
        ..Fake::default()
    }));
    let app = Router::new()
        .route("/api/v1/applications/{name}", get(application))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

fn healthy() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/argocd/application-synced-healthy.json"
    ))
    .unwrap()
}

fn client(url: &str, token: &str) -> ArgoCdClient {
    ArgoCdClient::new(url, Secret::new(token), Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn a_pushed_revision_goes_from_out_of_sync_to_live() {
    let out_of_sync = healthy()
        .replace(r#""status": "Synced""#, r#""status": "OutOfSync""#)
        .replace(REV, "0000000000000000000000000000000000000000");
    let progressing = healthy().replace(r#""status": "Healthy""#, r#""status": "Progressing""#);
    let (url, fake) = serve(vec![
        (200, out_of_sync),
        (200, progressing),
        (200, healthy()),
    ])
    .await;
    let argo = client(&url, "argo-t0ken");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let app = argo
            .application("checkout-production", seen.is_empty())
            .await
            .unwrap();
        seen.push(match sync_progress(&app, REV) {
            SyncProgress::Live => "live".to_string(),
            SyncProgress::Waiting(why) => format!("waiting: {why}"),
            SyncProgress::Failed(why) => format!("failed: {why}"),
        });
    }
    assert_eq!(
        seen,
        [
            format!(
                "waiting: application is at 0000000000000000000000000000000000000000 (OutOfSync), not yet at {REV}"
            ),
            format!("waiting: {REV} is synced but Progressing"),
            "live".to_string(),
        ]
    );
    assert_eq!(
        fake.lock().unwrap().refreshes,
        ["normal"],
        "refresh asked once"
    );
}

#[tokio::test]
async fn errors_are_classified_and_never_show_the_token() {
    let (url, _) = serve(vec![(503, "upstream connect error".into())]).await;
    let err = client(&url, "argo-t0ken")
        .application("checkout-production", false)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");

    let wrong = client(&url, "wrong-secret-value");
    let err = wrong
        .application("checkout-production", false)
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains("wrong-secret-value"));

    let err = client(&url, "argo-t0ken")
        .application("nope", false)
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("not found"), "{err}");

    let (url, _) = serve(vec![(200, "<html>sign in</html>".into())]).await;
    let err = client(&url, "argo-t0ken")
        .application("checkout-production", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an Application"), "{err}");

    // Nothing listening: a connection error is transient.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(&dead, "argo-t0ken")
        .application("checkout-production", false)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn waiting_ends_live_failed_or_timed_out() {
    let progressing = healthy().replace(r#""status": "Healthy""#, r#""status": "Progressing""#);
    let poll = Duration::from_millis(5);
    let (url, fake) = serve(vec![
        (503, "busy".into()),
        (200, progressing.clone()),
        (200, healthy()),
    ])
    .await;
    client(&url, "argo-t0ken")
        .wait_until_live("checkout-production", REV, Duration::from_secs(10), poll)
        .await
        .unwrap();
    assert_eq!(fake.lock().unwrap().served, 3, "a transient 503 is retried");

    let degraded = healthy().replace(r#""status": "Healthy""#, r#""status": "Degraded""#);
    let (url, _) = serve(vec![(200, degraded)]).await;
    let err = client(&url, "argo-t0ken")
        .wait_until_live("checkout-production", REV, Duration::from_secs(10), poll)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WaitError::Failed(ref why) if why.starts_with("Degraded")),
        "{err}"
    );

    let (url, _) = serve(vec![(200, progressing)]).await;
    let err = client(&url, "argo-t0ken")
        .wait_until_live("checkout-production", REV, Duration::from_millis(30), poll)
        .await
        .unwrap_err();
    assert!(matches!(err, WaitError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("synced but Progressing"), "{err}");

    let err = client(&url, "wrong")
        .wait_until_live("checkout-production", REV, Duration::from_secs(10), poll)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WaitError::Api(_)),
        "a bad token is not waited out: {err}"
    );
}
