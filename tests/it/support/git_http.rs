//! A smart-HTTP git server for tests: axum on 127.0.0.1:0 in front of the real
//! `git http-backend` (CGI), with the token check GitHub does (HTTP Basic,
//! `x-access-token:TOKEN`; anything else gets 401 and a `WWW-Authenticate` challenge).
//! receive-pack runs for real, so hooks and ref-lock checks behave as on a git server.

use std::path::PathBuf;
use std::process::Stdio;

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

/// Whether a token (the password of `x-access-token:TOKEN`) may fetch and push.
pub type TokenCheck = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone)]
struct Server {
    root: PathBuf,
    check: TokenCheck,
}

pub struct GitHttp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHttp {
    /// Serves the repositories under `root` (e.g. `/remote.git`) to clients presenting `token`.
    pub async fn start(root: PathBuf, token: &str) -> GitHttp {
        let token = token.to_string();
        GitHttp::start_checked(root, std::sync::Arc::new(move |t| t == token)).await
    }

    /// Serves the repositories under `root` to clients whose token `check` accepts (tokens
    /// that expire, as GitHub App installation tokens do).
    pub async fn start_checked(root: PathBuf, check: TokenCheck) -> GitHttp {
        let state = Server { root, check };
        let app = axum::Router::new().fallback(cgi).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        GitHttp { base, task }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("{}/{repo}", self.base)
    }
}

async fn cgi(State(s): State<Server>, req: Request<Body>) -> Response<Body> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = auth
        .strip_prefix("Basic ")
        .and_then(unbase64)
        .and_then(|pair| pair.strip_prefix("x-access-token:").map(str::to_string));
    if !token.is_some_and(|t| (s.check)(&t)) {
        let mut r = Response::new(Body::from("Bad credentials\n"));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"git\""),
        );
        return r;
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let git_protocol = req
        .headers()
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = to_bytes(req.into_body(), 64 * 1024 * 1024).await.unwrap();

    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &s.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_TYPE", &content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = git_protocol {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = cmd.spawn().expect("spawning git http-backend");
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        drop(stdin);
    });
    let out = child.wait_with_output().await.unwrap();
    writer.await.unwrap();

    // CGI output: headers, a blank line, the body.
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
    let Some((at, sep)) = split else {
        let mut r = Response::new(Body::from(out.stderr));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    };
    let head = String::from_utf8_lossy(&raw[..at]).into_owned();
    let mut resp = Response::new(Body::from(raw[at + sep..].to_vec()));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            *resp.status_mut() = StatusCode::from_u16(code).unwrap();
        } else if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(k.trim().as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The text of a base64 `user:password` pair.
fn unbase64(input: &str) -> Option<String> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in input.trim_end_matches('=').bytes() {
        let v = T.iter().position(|&t| t == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(
        unbase64(&base64(b"x-access-token:ghs_1")).unwrap(),
        "x-access-token:ghs_1"
    );
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(b"fooba"), "Zm9vYmE=");
    assert_eq!(base64(b"foob"), "Zm9vYg==");
}
