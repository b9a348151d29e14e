-- Recovery codes become one-time codes of either purpose (recovery or
-- verification), and wrong guesses are counted per purpose. Rows written
-- before this migration were all recovery codes and recovery failures, which
-- the column default records. Renamed tables keep their indexes under the
-- old names, so those are dropped and made again under the new ones.
ALTER TABLE recovery_codes RENAME TO one_time_codes;
ALTER TABLE one_time_codes ADD COLUMN purpose TEXT NOT NULL DEFAULT 'recovery';
DROP INDEX recovery_codes_flow;
CREATE INDEX one_time_codes_flow ON one_time_codes (flow_id);

ALTER TABLE recovery_failures RENAME TO code_failures;
ALTER TABLE code_failures ADD COLUMN purpose TEXT NOT NULL DEFAULT 'recovery';
DROP INDEX recovery_failures_address;
CREATE INDEX code_failures_address ON code_failures (purpose, address, at);

-- Finding the owner of a verifiable address needs no new index:
-- identity_verifiable_addresses is UNIQUE (via, value) since 0001.
