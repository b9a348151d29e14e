//! Code mails asked for by address, served after the answer.
//!
//! A recovery, verification or code-login submit that names an address records one
//! request row (with the flow, in one transaction) and answers. Everything
//! that depends on whether the address has an account happens here, once
//! the answer is out: finding the identity, the address's send cap, making
//! the code, rendering and queueing the mail. So the request path does the
//! same reads and writes whatever the address, and neither its answer nor
//! its timing tells an account from none, or a capped address from one
//! that was mailed. Doing the same work for both cases inside the request
//! was tried first; the known side still took a third longer (its mail
//! rendered and queued), which a few hundred requests could tell apart.
//!
//! The server that records a request serves it in a task of its own, after
//! a short random pause. Without the pause the extra work a known address
//! brings (its identity read, its mail rendered and queued) would land on
//! whatever request the same client sends next, and a client alternating
//! known and unknown addresses could time that instead: measured on
//! PostgreSQL it made requests that followed a known address about 60 µs
//! slower. Paused for [`PAUSE`], the work lands among the requests of the
//! next tens of milliseconds, whoever sends them. The task serves the
//! request from memory (the request and its flow as just saved), so the
//! only extra database work the split costs is the request's own row. A
//! request whose server stopped first is claimed by any server's
//! [`CodeRequestSweeper`] (claims carry a lease, so sweeps do not serve one
//! request twice). Whoever serves a request writes its code in the
//! transaction that deletes the request, so a code is issued at most once
//! even if a slow task and a sweep both get to it.

use std::sync::Arc;

use chrono::Duration;
use uuid::Uuid;

use super::login_code::CodeLogin;
use super::recovery::RecoveryService;
use super::verification::VerificationService;
use super::{Flow, FlowError};
use crate::store::{CodePurpose, CodeRequest, Store};
use crate::time::Clock;

/// The pause before a request is served: uniformly random in this range.
pub const PAUSE: std::ops::Range<std::time::Duration> =
    std::time::Duration::from_millis(10)..std::time::Duration::from_millis(60);

/// How long a sweep holds a request before another may serve it.
const LEASE: Duration = Duration::minutes(1);
/// Requests older than this with no live claim are left for the sweeper:
/// their own server's task would have claimed them by now.
const STALE_AFTER: Duration = Duration::seconds(5);
const SWEEP_BATCH: u32 = 64;

/// A request for a code for `address` in `flow`, made now.
pub(crate) fn new_request(flow: &Flow, purpose: CodePurpose, address: &str) -> CodeRequest {
    CodeRequest {
        id: Uuid::new_v4(),
        flow_id: flow.id,
        purpose,
        address: address.to_string(),
        requested_at: flow.updated_at,
    }
}

/// What serves a request of one purpose (recovery, verification).
#[async_trait::async_trait]
pub(crate) trait ServesCodeRequests: Clone + Send + Sync + 'static {
    /// Issues the code `request` asked for, if any, and queues its mail,
    /// ending the request in the same transaction.
    async fn serve(&self, request: CodeRequest, flow: Flow) -> Result<(), FlowError>;
}

/// Serves `request`, made in `flow`, with `server` in a task of its own,
/// after [`PAUSE`] (see the module's comment for why).
pub(crate) fn serve_soon(server: impl ServesCodeRequests, request: CodeRequest, flow: Flow) {
    tokio::spawn(async move {
        tokio::time::sleep(pause()).await;
        let id = request.id;
        if let Err(e) = server.serve(request, flow).await {
            tracing::error!(error = %e, request_id = %id, "a code request could not be served");
        }
    });
}

fn pause() -> std::time::Duration {
    let mut bytes = [0u8; 4];
    // A fixed pause is still a pause if the OS has no randomness to give.
    let _ = getrandom::fill(&mut bytes);
    let span = PAUSE.end - PAUSE.start;
    PAUSE.start + span.mul_f64(f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX))
}

/// The request with its flow, or `None` (the request ended) when the flow
/// is gone or expired: a code for it could never be used.
async fn with_flow(
    store: &dyn Store,
    clock: &dyn Clock,
    request: CodeRequest,
) -> Result<Option<(CodeRequest, Flow)>, FlowError> {
    match store.get_flow(request.flow_id).await? {
        Some(flow) if !flow.is_expired(clock.now()) => Ok(Some((request, flow))),
        _ => {
            store.fulfil_code_request(request.id, None, None).await?;
            Ok(None)
        }
    }
}

/// Serves the requests their own server did not (it stopped, or crashed,
/// before its task ran).
#[derive(Clone)]
pub struct CodeRequestSweeper {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    recovery: RecoveryService,
    verification: VerificationService,
    /// Login by code, when enabled; a login request left over from a
    /// configuration that had it is ended unserved.
    login: Option<CodeLogin>,
}

impl CodeRequestSweeper {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        recovery: RecoveryService,
        verification: VerificationService,
        login: Option<CodeLogin>,
    ) -> Self {
        Self { store, clock, recovery, verification, login }
    }

    /// One batch of stale requests, served in the order they were made;
    /// returns how many were claimed.
    pub async fn sweep(&self) -> Result<usize, FlowError> {
        let now = self.clock.now();
        let claimed =
            self.store.claim_stale_code_requests(now - STALE_AFTER, SWEEP_BATCH, now, now + LEASE).await?;
        let count = claimed.len();
        for request in claimed {
            let Some((request, flow)) = with_flow(self.store.as_ref(), self.clock.as_ref(), request).await?
            else {
                continue;
            };
            match request.purpose {
                CodePurpose::Recovery => ServesCodeRequests::serve(&self.recovery, request, flow).await?,
                CodePurpose::Verification => {
                    ServesCodeRequests::serve(&self.verification, request, flow).await?
                }
                // Sign-up codes go out on the request path and are never
                // recorded; a row of that purpose asks for nothing.
                CodePurpose::Registration => {
                    self.store.fulfil_code_request(request.id, None, None).await?;
                }
                CodePurpose::Login => match &self.login {
                    Some(login) => ServesCodeRequests::serve(login, request, flow).await?,
                    None => {
                        self.store.fulfil_code_request(request.id, None, None).await?;
                    }
                },
            }
        }
        Ok(count)
    }
}

/// Sweeps every `interval` (at once again while a batch comes back full)
/// until `stop` resolves, each round with the sweeper `current` gives: a
/// configuration reload brings new services, and leftovers are served with
/// the settings in force.
pub async fn sweep_periodically(
    current: impl Fn() -> CodeRequestSweeper,
    interval: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let full = match current().sweep().await {
            Ok(n) => n as u32 == SWEEP_BATCH,
            Err(e) => {
                tracing::error!(error = %e, "stale code requests could not be served");
                false
            }
        };
        let pause = if full { std::time::Duration::ZERO } else { interval };
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
