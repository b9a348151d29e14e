-- Code mails asked for by address. The request path records one row, the
-- same whatever the address; a worker claims it (claimed_until), resolves
-- the address, issues the code and queues the mail, and deletes the row in
-- that same transaction. Rows go with their flow.
CREATE TABLE code_requests (
    id            uuid PRIMARY KEY,
    flow_id       uuid NOT NULL REFERENCES selfservice_flows (id) ON DELETE CASCADE,
    purpose       text NOT NULL,
    address       text NOT NULL,
    requested_at  timestamptz NOT NULL,
    claimed_until timestamptz
);
CREATE INDEX code_requests_flow ON code_requests (flow_id);
CREATE INDEX code_requests_requested_at ON code_requests (requested_at);
