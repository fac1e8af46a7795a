-- Roles of the built-in provider's accounts, granted and revoked by operators
-- (`authflow users grant|revoke`), and accounts an operator disabled (`authflow users
-- disable`: no sign-in, sessions ended). Role names are checked before they get here
-- (`[A-Za-z0-9._:-]{1,64}`, at most 32 per account). Runs unchanged on SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS user_roles (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, role)
);

ALTER TABLE users ADD COLUMN disabled_at BIGINT;
