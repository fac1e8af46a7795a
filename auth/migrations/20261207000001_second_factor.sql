-- Second factors of built-in accounts (auth/src/mfa/). The TOTP secret is encrypted with
-- AES-256-GCM under AUTHFLOW_MFA_KEY; it counts only once confirmed with a code. Recovery
-- codes are kept as HMAC-SHA-256 under the same key, each used once (used_at). Runs
-- unchanged on SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS mfa_totp (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT
);

CREATE TABLE IF NOT EXISTS mfa_recovery_codes (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
