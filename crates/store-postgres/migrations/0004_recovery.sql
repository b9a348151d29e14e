-- One-time recovery codes (only their keyed hash) and the wrong guesses
-- counted against an address across flows.
CREATE TABLE recovery_codes (
    id          uuid PRIMARY KEY,
    flow_id     uuid NOT NULL,
    -- NULL for codes sent to addresses no identity owns.
    identity_id uuid REFERENCES identities (id) ON DELETE CASCADE,
    address     text NOT NULL,
    code_hmac   text NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL
);
CREATE INDEX recovery_codes_flow ON recovery_codes (flow_id);

CREATE TABLE recovery_failures (
    id      uuid PRIMARY KEY,
    address text NOT NULL,
    at      timestamptz NOT NULL
);
CREATE INDEX recovery_failures_address ON recovery_failures (address, at);
