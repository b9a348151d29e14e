-- Recovery codes become one-time codes of either purpose (recovery or
-- verification), and wrong guesses are counted per purpose. Rows written
-- before this migration were all recovery codes and recovery failures, which
-- the column default records. Renamed tables keep their indexes and
-- constraints under the old names: the indexes are dropped and made again
-- under the new ones, the constraints renamed.
ALTER TABLE recovery_codes RENAME TO one_time_codes;
ALTER TABLE one_time_codes ADD COLUMN purpose text NOT NULL DEFAULT 'recovery';
ALTER TABLE one_time_codes RENAME CONSTRAINT recovery_codes_pkey TO one_time_codes_pkey;
ALTER TABLE one_time_codes RENAME CONSTRAINT recovery_codes_identity_id_fkey TO one_time_codes_identity_id_fkey;
DROP INDEX recovery_codes_flow;
CREATE INDEX one_time_codes_flow ON one_time_codes (flow_id);

ALTER TABLE recovery_failures RENAME TO code_failures;
ALTER TABLE code_failures ADD COLUMN purpose text NOT NULL DEFAULT 'recovery';
ALTER TABLE code_failures RENAME CONSTRAINT recovery_failures_pkey TO code_failures_pkey;
DROP INDEX recovery_failures_address;
CREATE INDEX code_failures_address ON code_failures (purpose, address, at);

-- Finding the owner of a verifiable address needs no new index:
-- identity_verifiable_addresses is UNIQUE (via, value) since 0001.
