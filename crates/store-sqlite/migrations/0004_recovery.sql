-- One-time recovery codes (only their keyed hash) and the wrong guesses
-- counted against an address across flows.
CREATE TABLE recovery_codes (
    id          TEXT PRIMARY KEY NOT NULL,
    flow_id     TEXT NOT NULL,
    -- NULL for codes sent to addresses no identity owns.
    identity_id TEXT REFERENCES identities (id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    code_hmac   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX recovery_codes_flow ON recovery_codes (flow_id);

CREATE TABLE recovery_failures (
    id      TEXT PRIMARY KEY NOT NULL,
    address TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX recovery_failures_address ON recovery_failures (address, at);
