//! The accept loop for both listeners: hyper's HTTP/1 server with a header
//! read timeout, an idle keep-alive timeout, a bound on the request head
//! and a cap on concurrent connections (`axum::serve` exposes none of
//! these), and a graceful stop that lets in-flight requests finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower_service::Service;

/// The request line and headers together; hyper answers 431 beyond this
/// (and beyond 100 headers). Large enough for a long `return_to` and a
/// full cookie jar.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What `serve.limits` configures, parsed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u32,
}

impl Limits {
    pub fn from_config(limits: &crate::config::ServeLimits) -> Self {
        Limits {
            header_read_timeout: limits.header_read_timeout.std(),
            idle_timeout: limits.idle_timeout.std(),
            max_connections: limits.max_connections.max(1),
        }
    }
}

/// The router a listener serves, which a configuration reload replaces
/// while connections stay open: each request takes the one current then.
#[derive(Clone)]
pub struct Routes(Arc<std::sync::RwLock<Router>>);

impl Routes {
    pub fn new(router: Router) -> Self {
        Self(Arc::new(std::sync::RwLock::new(router)))
    }

    fn current(&self) -> Router {
        // A panic while swapping cannot leave a half-written router behind.
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn replace(&self, router: Router) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = router;
    }
}

/// Serves `routes` on `listener` until `stop` fires, then stops accepting,
/// closes idle connections, and returns once every connection has ended.
pub async fn serve(listener: TcpListener, routes: Routes, limits: Limits, mut stop: watch::Receiver<()>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    loop {
        // Beyond the cap, clients wait in the kernel's backlog, unserved.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let routes = routes.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, routes, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it ends.
    let _ = permits.acquire_many(limits.max_connections).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    routes: Routes,
    limits: Limits,
    mut stop: watch::Receiver<()>,
) {
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = Busy::start(&activity);
            let mut router = routes.current();
            async move {
                let response: Result<_, Infallible> = router.call(request).await;
                drop(busy);
                response
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut closing = false;
    // A graceful close waits for pending writes, which never finish if the
    // client stops reading (say, after pipelining requests): the connection,
    // and its permit, would be held for good. Once no request is in flight
    // and the close has had another idle period, the connection is dropped.
    let mut abandon_at: Option<Instant> = None;
    loop {
        let idle_check = activity.next_idle_check(limits.idle_timeout);
        let abandon_check = abandon_at.unwrap_or(idle_check);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_check), if abandon_at.is_none() => {
                if activity.idle_for(limits.idle_timeout) {
                    if !closing {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    abandon_at = Some(Instant::now() + limits.idle_timeout);
                }
            }
            _ = tokio::time::sleep_until(abandon_check), if abandon_at.is_some() => {
                tracing::debug!(%peer, "dropped a connection whose client stopped reading");
                return;
            }
        }
    }
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity(Mutex<(usize, Instant)>);

impl Default for Activity {
    fn default() -> Self {
        Self(Mutex::new((0, Instant::now())))
    }
}

impl Activity {
    fn next_idle_check(&self, idle: Duration) -> Instant {
        let (in_flight, since) = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight > 0 { Instant::now() + idle } else { since + idle }
    }

    fn idle_for(&self, idle: Duration) -> bool {
        let (in_flight, since) = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        in_flight == 0 && since.elapsed() >= idle
    }
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.0.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        state.1 = Instant::now();
    }
}
