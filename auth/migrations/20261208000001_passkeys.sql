-- Passkeys (WebAuthn) of built-in accounts (auth/src/mfa/passkey.rs). One row per
-- credential: its id (base64url; unique across every account, as WebAuthn requires), the
-- webauthn-rs Passkey as JSON (public key and signature counter: nothing secret), the name
-- its owner gave it, and when it was made and last used (Unix ms). Runs unchanged on SQLite
-- and PostgreSQL.
CREATE TABLE IF NOT EXISTS mfa_passkeys (
    credential_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    passkey TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE INDEX IF NOT EXISTS mfa_passkeys_user ON mfa_passkeys (user_id);
