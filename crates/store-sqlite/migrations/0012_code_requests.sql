-- Code mails asked for by address. The request path records one row, the
-- same whatever the address; a worker claims it (claimed_until), resolves
-- the address, issues the code and queues the mail, and deletes the row in
-- that same transaction. Rows go with their flow.
CREATE TABLE code_requests (
    id            TEXT PRIMARY KEY NOT NULL,
    flow_id       TEXT NOT NULL REFERENCES selfservice_flows (id) ON DELETE CASCADE,
    purpose       TEXT NOT NULL,
    address       TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    claimed_until TEXT
);
CREATE INDEX code_requests_flow ON code_requests (flow_id);
CREATE INDEX code_requests_requested_at ON code_requests (requested_at);
