-- The database cleanup (`latchkey cleanup sql`, and periodically in `serve`).
--
-- A message written with a one-time code (in the same transaction as the
-- code) records when that code expires, so once the message is delivered
-- and the code dead its subject and bodies can be blanked: old mail in the
-- outbox then holds no codes. Other messages leave it NULL.
ALTER TABLE courier_messages ADD COLUMN code_expires_at TEXT;
-- Messages queued before this migration record no expiry. Their codes were
-- announced by these templates; those already delivered are treated as
-- expired (the recipient has the mail), so nothing pre-upgrade keeps a code.
UPDATE courier_messages SET code_expires_at = created_at
WHERE template_type IN ('recovery_code_valid', 'verification_code_valid');
CREATE INDEX courier_messages_code_expires_at ON courier_messages (code_expires_at)
    WHERE code_expires_at IS NOT NULL;
-- Finished messages by when they finished.
CREATE INDEX courier_messages_done ON courier_messages (status, updated_at);

-- What each cleanup step looks rows up by; flows have theirs since 0002
-- and rate events since 0007.
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_revoked ON sessions (updated_at) WHERE active = 0;
CREATE INDEX one_time_codes_expires_at ON one_time_codes (expires_at);
CREATE INDEX one_time_codes_used_at ON one_time_codes (used_at) WHERE used_at IS NOT NULL;
CREATE INDEX code_failures_at ON code_failures (at);
