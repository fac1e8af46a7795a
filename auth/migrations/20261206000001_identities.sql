-- External identities (`[[identity.providers]]`: OpenID Connect, GitHub) linked to the
-- built-in provider's accounts, so that a person can sign in through a provider instead of,
-- or besides, a password. A provider names a person by a stable subject (OIDC `sub`,
-- GitHub's numeric id), never by an address, so the link is keyed on (provider, subject)
-- and one identity opens at most one account. `email` is the address the provider gave when
-- the link was made (shown to the account's owner, never used to find the account). An
-- account made through a provider has no password: its `users.password_hash` is ''. The
-- links go with their account, and are dropped when a mailed link first verifies the
-- account's address (auth/src/users/identities.rs). Runs unchanged on SQLite and
-- PostgreSQL; timestamps are Unix ms.
CREATE TABLE IF NOT EXISTS identities (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email TEXT,
    linked_at BIGINT NOT NULL,
    last_sign_in_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);

CREATE INDEX IF NOT EXISTS identities_user ON identities (user_id);
