-- Self-service flows and sessions: the SQLite tables in native types.

-- A flow is read and written whole, so its state is one jsonb document;
-- `kind` and `expires_at` are columns of their own for cleanup and triage.
CREATE TABLE selfservice_flows (
    id         uuid PRIMARY KEY,
    kind       text NOT NULL,
    expires_at timestamptz NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX selfservice_flows_expires_at ON selfservice_flows (expires_at);

-- Tokens are stored only as SHA-256 hex digests; their unique indexes are
-- the lookup paths of whoami and logout.
CREATE TABLE sessions (
    id                     uuid PRIMARY KEY,
    identity_id            uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    token_hash             text NOT NULL UNIQUE,
    logout_token_hash      text NOT NULL UNIQUE,
    active                 boolean NOT NULL,
    issued_at              timestamptz NOT NULL,
    expires_at             timestamptz NOT NULL,
    authenticated_at       timestamptz NOT NULL,
    aal                    text NOT NULL,
    authentication_methods jsonb NOT NULL,
    devices                jsonb NOT NULL,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);
-- Serves the cascade from identities and listing an identity's sessions in
-- id order (keyset pagination).
CREATE INDEX sessions_identity ON sessions (identity_id, id);
