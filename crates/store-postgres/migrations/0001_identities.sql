-- Identities with their credentials and addresses: the same tables and
-- constraints as the SQLite schema, in native types. Enumerations stay text
-- (as in Kratos) so a new credential type or state needs no ALTER TYPE.
CREATE TABLE identities (
    id               uuid PRIMARY KEY,
    schema_id        text NOT NULL,
    state            text NOT NULL,
    state_changed_at timestamptz,
    traits           jsonb NOT NULL,
    metadata_public  jsonb,
    metadata_admin   jsonb,
    external_id      text UNIQUE,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- UNIQUE (identity_id, type) leads with identity_id, so it also serves the
-- cascade from identities and loading by identity; no separate index.
CREATE TABLE identity_credentials (
    id          uuid PRIMARY KEY,
    identity_id uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    type        text NOT NULL,
    config      jsonb NOT NULL,
    version     integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    UNIQUE (identity_id, type)
);

-- The key is the SQLite one, (type, identifier), with its columns swapped so
-- that the identifier-only filter of the admin list can use it too.
CREATE TABLE identity_credential_identifiers (
    credential_id uuid NOT NULL REFERENCES identity_credentials (id) ON DELETE CASCADE,
    identity_id   uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    type          text NOT NULL,
    identifier    text NOT NULL,
    position      integer NOT NULL,
    PRIMARY KEY (identifier, type)
);
CREATE INDEX identity_credential_identifiers_identity ON identity_credential_identifiers (identity_id);
-- Serves both the cascade from identity_credentials and reading a
-- credential's identifiers in order.
CREATE INDEX identity_credential_identifiers_credential
    ON identity_credential_identifiers (credential_id, position);

CREATE TABLE identity_verifiable_addresses (
    id          uuid PRIMARY KEY,
    identity_id uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    via         text NOT NULL,
    value       text NOT NULL,
    verified    boolean NOT NULL,
    status      text NOT NULL,
    verified_at timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    UNIQUE (via, value)
);
CREATE INDEX identity_verifiable_addresses_identity ON identity_verifiable_addresses (identity_id);

CREATE TABLE identity_recovery_addresses (
    id          uuid PRIMARY KEY,
    identity_id uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    via         text NOT NULL,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    UNIQUE (via, value)
);
CREATE INDEX identity_recovery_addresses_identity ON identity_recovery_addresses (identity_id);
