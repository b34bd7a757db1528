//! Serving a router on a socket within bounds no client can stretch: at most
//! `server.max_connections` connections at once (more wait in the kernel's backlog, holding no
//! file handle of ours), HTTP/1.1 only (one request at a time per connection), request headers
//! (and the next request on an idle keep-alive connection) within `server.header_timeout`, and a
//! graceful stop that waits at most the grace period for requests in flight.
//!
//! axum's own `serve` has none of these limits; this is the same hyper underneath, configured.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use deploybot_core::config::ConnectionLimits;

/// The largest request head (request line and headers) read; GitHub's are a few kilobytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener` until `stop` turns true, then stops accepting, lets the
/// requests in flight finish (idle connections close at once) and returns after at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: &ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.as_duration())
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    while !*stop.borrow() {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file handles (or a peer gone before accept): wait a moment
                    // rather than spin on the error.
                    warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = socket.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(socket), service));
        tokio::spawn(async move {
            // A client that stalls or hangs up mid-request ends its connection, nothing more.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let open = graceful.count();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            open,
            ?grace,
            "connections still open after the grace period; closing them"
        );
    } else if open > 0 {
        info!(open, "connections finished");
    }
}
