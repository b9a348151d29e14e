-- The highest authenticator assurance level an identity's credentials
-- allow (Kratos's `available_aal`), kept on the identity row so whoami can
-- tell an aal1 session that could be aal2 without reading credentials. The
-- store rewrites it with every credential write; identities that already
-- have a TOTP key or backup codes start at aal2.
ALTER TABLE identities ADD COLUMN available_aal TEXT NOT NULL DEFAULT 'aal1';

UPDATE identities SET available_aal = 'aal2'
WHERE id IN (
    SELECT identity_id FROM identity_credentials
    WHERE (type = 'totp' AND COALESCE(json_extract(config, '$.sealed_totp_url'), '') <> '')
       OR (type = 'lookup_secret' AND COALESCE(json_extract(config, '$.sealed_recovery_codes'), '') <> '')
);
