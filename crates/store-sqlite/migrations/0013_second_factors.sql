-- What second factors have spent, kept apart from the credentials (whose
-- rows an identity update rewrites), each written by one conditional
-- statement. Rows go with their identity.

-- The newest TOTP time step accepted for an identity; only later ones pass.
CREATE TABLE totp_used_steps (
    identity_id TEXT PRIMARY KEY NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL
);

-- Spent lookup codes: which code (its position) of which set of codes.
CREATE TABLE lookup_secret_uses (
    identity_id TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    set_id      TEXT NOT NULL,
    position    INTEGER NOT NULL,
    used_at     TEXT NOT NULL,
    PRIMARY KEY (identity_id, set_id, position)
);
