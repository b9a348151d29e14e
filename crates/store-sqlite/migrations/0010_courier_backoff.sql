-- Retries back off: a message put back in the queue after a failed attempt
-- records when it may be tried again, and claims skip it until then. NULL
-- means due now (new messages, and everything queued before this migration).
ALTER TABLE courier_messages ADD COLUMN next_attempt_at TEXT;
-- Dispatchers look up queued messages by when they are due.
CREATE INDEX courier_messages_due ON courier_messages (status, next_attempt_at);
-- 0009 marked code messages queued before it as already expired, which was
-- harmless while expiry only meant "may be blanked"; now it means "abandon
-- unsent". Their real expiry is unknown, so the delivery horizon decides.
UPDATE courier_messages SET code_expires_at = NULL
WHERE status IN ('queued', 'processing') AND code_expires_at = created_at;
