-- The courier's outbox and its delivery attempts.
CREATE TABLE courier_messages (
    id            TEXT PRIMARY KEY NOT NULL,
    status        TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    html_body     TEXT,
    template_type TEXT NOT NULL,
    send_count    INTEGER NOT NULL DEFAULT 0,
    -- While `processing`: when the claim lapses and another dispatcher may retry.
    lease_until   TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX courier_messages_status ON courier_messages (status, created_at);
CREATE INDEX courier_messages_recipient ON courier_messages (recipient);

CREATE TABLE courier_dispatches (
    id         TEXT PRIMARY KEY NOT NULL,
    message_id TEXT NOT NULL REFERENCES courier_messages (id) ON DELETE CASCADE,
    status     TEXT NOT NULL,
    error      TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX courier_dispatches_message ON courier_dispatches (message_id, created_at);
