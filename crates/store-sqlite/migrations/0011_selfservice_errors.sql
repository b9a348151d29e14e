-- The error flow: errors a browser is sent to the error UI with, read back
-- by `GET /self-service/errors?id=` until they expire; the cleanup removes
-- them after.
CREATE TABLE selfservice_errors (
    id         TEXT PRIMARY KEY NOT NULL,
    error      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX selfservice_errors_expires_at ON selfservice_errors (expires_at);
