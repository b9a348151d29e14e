//! What every handler can reach: the domain services and the public and
//! admin base URLs that links and redirects are built from.

use std::sync::Arc;

use latchkey_domain::{IdentityManager, Store};

/// `serve.public.base_url` and `serve.admin.base_url`, without a trailing slash.
#[derive(Debug, Clone)]
pub struct BaseUrls {
    pub public: String,
    pub admin: String,
}

impl BaseUrls {
    pub fn new(public: &str, admin: &str) -> Self {
        Self {
            public: public.trim_end_matches('/').to_string(),
            admin: admin.trim_end_matches('/').to_string(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub identities: IdentityManager,
    pub urls: Arc<BaseUrls>,
    pub version: &'static str,
}
