-- Attempts per code. Past the per-address budget of wrong codes, a code is
-- still judged on the first attempt made against it, so the owner asking
-- for a fresh code can use it while someone else fails codes for the
-- address. Counted by one atomic `UPDATE … SET attempts = attempts + 1
-- RETURNING`. Codes in flight take their flow's attempt count: an upper
-- bound (it also counts attempts on codes the flow sent before), so no code
-- already guessed at gets a fresh try from the upgrade.
ALTER TABLE one_time_codes ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
UPDATE one_time_codes
SET attempts = COALESCE(
    (SELECT code_attempts FROM selfservice_flows WHERE selfservice_flows.id = one_time_codes.flow_id), 0)
WHERE used_at IS NULL;
