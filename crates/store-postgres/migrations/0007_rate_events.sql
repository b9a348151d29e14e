-- Events counted in time windows (failed logins per identifier and per
-- client IP, mails per address, flows per IP). `subject` is a digest of
-- whom the event counts against, never the identifier or address itself.
-- One event may be recorded in several windows under the same id.
CREATE TABLE rate_events (
    bucket  text NOT NULL,
    subject text NOT NULL,
    at      timestamptz NOT NULL,
    id      uuid NOT NULL,
    PRIMARY KEY (bucket, subject, at, id)
);
CREATE INDEX rate_events_id ON rate_events (id);
CREATE INDEX rate_events_at ON rate_events (at);
