-- Self-service flows (one row per flow, its state as JSON) and sessions.
CREATE TABLE selfservice_flows (
    id         TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX selfservice_flows_expires_at ON selfservice_flows (expires_at);

-- Tokens are stored only as SHA-256 hex digests.
CREATE TABLE sessions (
    id                     TEXT PRIMARY KEY NOT NULL,
    identity_id            TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    token_hash             TEXT NOT NULL UNIQUE,
    logout_token_hash      TEXT NOT NULL UNIQUE,
    active                 INTEGER NOT NULL,
    issued_at              TEXT NOT NULL,
    expires_at             TEXT NOT NULL,
    authenticated_at       TEXT NOT NULL,
    aal                    TEXT NOT NULL,
    authentication_methods TEXT NOT NULL,
    devices                TEXT NOT NULL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);
CREATE INDEX sessions_identity ON sessions (identity_id, id);
