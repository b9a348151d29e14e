//! What may be done with sessions once they exist: finding the one a token
//! carries (whoami's hot path), logging out, listing, revoking and extending.
//! Handlers call this rather than the store, so the rules (a session counts
//! only while live and its identity active; one identity cannot revoke
//! another's sessions; extending saves writes) live in one place.

use std::sync::Arc;

use chrono::Duration;
use uuid::Uuid;

use crate::aal::AalPolicy;
use crate::identity::{Identity, IdentityState};
use crate::session::{Session, SessionHit, hash_token};
use crate::store::{SessionQuery, Store, StoreError};
use crate::time::Clock;

#[derive(Clone)]
pub struct SessionService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    lifespan: Duration,
    earliest_possible_extend: Duration,
    whoami_aal: AalPolicy,
}

/// Why a user could not revoke one of their sessions.
#[derive(Debug, PartialEq, Eq)]
pub enum RevokeError {
    /// The session the request itself carries: that is what logout is for.
    Current,
    /// No such session, or another identity's (which is not told apart).
    NotFound,
}

impl SessionService {
    /// `lifespan` is what an extension grants; a session with more than
    /// `earliest_possible_extend` left is not extended (as in Kratos).
    /// `whoami_required_aal` is `session.whoami.required_aal`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        lifespan: Duration,
        earliest_possible_extend: Duration,
        whoami_aal: AalPolicy,
    ) -> Self {
        Self { store, clock, lifespan, earliest_possible_extend, whoami_aal }
    }

    /// Whether the session is enough for whoami, the session list and a
    /// sign-in's answer (`session.whoami.required_aal`). Judged from the
    /// identity as loaded with the session: no read, so a cached whoami
    /// stays free of the database.
    pub fn meets_whoami_aal(&self, session: &Session, identity: &Identity) -> bool {
        self.whoami_aal.satisfied_by(session, identity)
    }

    /// The live session `token` carries, with its active identity, shared
    /// with the whoami cache rather than copied.
    pub async fn current(&self, token: &str) -> Result<Option<Arc<SessionHit>>, StoreError> {
        let hit = self.store.shared_session_by_token(&hash_token(token)).await?;
        let now = self.clock.now();
        Ok(hit.filter(|hit| hit.session.is_live(now) && hit.identity.state == IdentityState::Active))
    }

    /// Whether `token` belongs to a live session (whoever its identity is):
    /// the question a browser's logout URL asks.
    pub async fn is_live(&self, token: &str) -> Result<bool, StoreError> {
        let hit = self.store.shared_session_by_token(&hash_token(token)).await?;
        Ok(hit.is_some_and(|hit| hit.session.is_live(self.clock.now())))
    }

    /// A native app's logout: revokes the session `token` opens; false when
    /// there is no active session to end.
    pub async fn log_out(&self, token: &str) -> Result<bool, StoreError> {
        match self.store.shared_session_by_token(&hash_token(token)).await? {
            Some(hit) if hit.session.active => {
                self.store.revoke_session(hit.session.id, self.clock.now()).await
            }
            _ => Ok(false),
        }
    }

    /// A browser's logout: revokes the session the logout token was minted
    /// with; false when the token is unknown or its session already ended.
    pub async fn log_out_with_logout_token(&self, logout_token: &str) -> Result<bool, StoreError> {
        if logout_token.is_empty() {
            return Ok(false);
        }
        match self.store.session_by_logout_token(&hash_token(logout_token)).await? {
            Some(session) if session.active => self.store.revoke_session(session.id, self.clock.now()).await,
            _ => Ok(false),
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        self.store.get_session(id).await
    }

    /// One page of sessions and how many match in all.
    pub async fn list(&self, query: &SessionQuery) -> Result<(Vec<Session>, u64), StoreError> {
        let now = self.clock.now();
        let sessions = self.store.list_sessions(query, now).await?;
        let total = self.store.count_sessions(query, now).await?;
        Ok((sessions, total))
    }

    /// Like [`list`](Self::list) without the count, for keyset pages.
    pub async fn page(&self, query: &SessionQuery) -> Result<Vec<Session>, StoreError> {
        self.store.list_sessions(query, self.clock.now()).await
    }

    /// Ends a session; false when there is no such session.
    pub async fn revoke(&self, id: Uuid) -> Result<bool, StoreError> {
        self.store.revoke_session(id, self.clock.now()).await
    }

    /// A signed-in user ends one of their own other sessions.
    pub async fn revoke_own(
        &self,
        current: &Session,
        id: Uuid,
    ) -> Result<Result<(), RevokeError>, StoreError> {
        if id == current.id {
            return Ok(Err(RevokeError::Current));
        }
        match self.store.get_session(id).await? {
            Some(session) if session.identity_id == current.identity_id => {
                self.store.revoke_session(id, self.clock.now()).await?;
                Ok(Ok(()))
            }
            _ => Ok(Err(RevokeError::NotFound)),
        }
    }

    /// Ends every active session of the identity but `keep`; returns how many.
    pub async fn revoke_all_of(&self, identity_id: Uuid, keep: Option<Uuid>) -> Result<u64, StoreError> {
        self.store.revoke_sessions_of(identity_id, keep, self.clock.now()).await
    }

    /// Deletes every session of the identity; false when there is no such identity.
    pub async fn delete_all_of(&self, identity_id: Uuid) -> Result<bool, StoreError> {
        if self.store.get_identity(identity_id).await?.is_none() {
            return Ok(false);
        }
        self.store.delete_sessions_of(identity_id).await?;
        Ok(true)
    }

    /// Pushes the expiry to now + lifespan, unless the session has more than
    /// `earliest_possible_extend` left (which saves writes, as in Kratos).
    /// Returns the session as it now is; `None` when there is no such session.
    pub async fn extend(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        let Some(mut session) = self.store.get_session(id).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if session.expires_at - now <= self.earliest_possible_extend {
            session.expires_at = now + self.lifespan;
            self.store.extend_session(id, session.expires_at, now).await?;
        }
        Ok(Some(session))
    }
}
