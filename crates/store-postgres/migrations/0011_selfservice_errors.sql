-- The error flow: errors a browser is sent to the error UI with, read back
-- by `GET /self-service/errors?id=` until they expire; the cleanup removes
-- them after.
CREATE TABLE selfservice_errors (
    id         uuid PRIMARY KEY,
    error      jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX selfservice_errors_expires_at ON selfservice_errors (expires_at);
