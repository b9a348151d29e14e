-- The courier's outbox and its delivery attempts.
CREATE TABLE courier_messages (
    id            uuid PRIMARY KEY,
    status        text NOT NULL,
    recipient     text NOT NULL,
    subject       text NOT NULL,
    body          text NOT NULL,
    html_body     text,
    template_type text NOT NULL,
    send_count    integer NOT NULL DEFAULT 0,
    -- While `processing`: when the claim lapses and another dispatcher may retry.
    lease_until   timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX courier_messages_status ON courier_messages (status, created_at);
CREATE INDEX courier_messages_recipient ON courier_messages (recipient);

CREATE TABLE courier_dispatches (
    id         uuid PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES courier_messages (id) ON DELETE CASCADE,
    status     text NOT NULL,
    error      text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX courier_dispatches_message ON courier_dispatches (message_id, created_at);
