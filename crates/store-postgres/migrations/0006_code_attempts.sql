-- Code attempts per flow get a column of their own, counted by one atomic
-- `UPDATE … SET code_attempts = code_attempts + 1 RETURNING`, instead of a
-- number inside the flow document: that document is written back whole, so a
-- concurrent request's stale copy could undo a count. `update_flow` never
-- writes this column. Flows in flight keep the count their document held.
ALTER TABLE selfservice_flows ADD COLUMN code_attempts bigint NOT NULL DEFAULT 0;
UPDATE selfservice_flows
SET code_attempts = (data -> 'internal' ->> 'submit_count')::numeric::bigint
WHERE jsonb_typeof(data -> 'internal' -> 'submit_count') = 'number';
