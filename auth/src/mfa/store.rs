//! The second factors in the users database: one TOTP secret per account (encrypted, active
//! once confirmed), the account's recovery codes (keyed hashes, single use) and its passkeys
//! (`webauthn-rs` `Passkey`s as JSON, one row per credential).

use sqlx::{AnyPool, Row};
use webauthn_rs::prelude::Passkey;

/// What an account has enrolled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enrolled {
    pub totp: bool,
    /// Unused recovery codes left.
    pub recovery_codes: usize,
    /// Passkeys (0 when `[mfa.webauthn]` is off, whatever the table holds).
    pub passkeys: usize,
}

impl Enrolled {
    /// Whether the account has a second factor at all (a sign-in then needs it).
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }

    /// The methods a sign-in may finish with, in the API's words.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.totp {
            m.push("totp");
        }
        if self.passkeys > 0 {
            m.push("webauthn");
        }
        if self.recovery_codes > 0 {
            m.push("recovery_code");
        }
        m
    }
}

pub struct MfaStore {
    db: AnyPool,
}

impl MfaStore {
    pub fn new(db: AnyPool) -> Self {
        MfaStore { db }
    }

    pub async fn enrolled(&self, user_id: &str) -> Result<Enrolled, sqlx::Error> {
        let totp = sqlx::query("SELECT confirmed_at FROM mfa_totp WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.db)
            .await?
            .and_then(|r| r.try_get::<Option<i64>, _>(0).ok().flatten())
            .is_some();
        let left: i64 = sqlx::query(
            "SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.db)
        .await?
        .try_get(0)?;
        let passkeys: i64 = sqlx::query("SELECT COUNT(*) FROM mfa_passkeys WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.db)
            .await?
            .try_get(0)?;
        Ok(Enrolled {
            totp,
            recovery_codes: left.max(0) as usize,
            passkeys: passkeys.max(0) as usize,
        })
    }

    /// The sealed secret of `user_id`, and whether it is confirmed.
    pub async fn totp_secret(&self, user_id: &str) -> Result<Option<(String, bool)>, sqlx::Error> {
        let row = sqlx::query("SELECT secret, confirmed_at FROM mfa_totp WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.db)
            .await?;
        Ok(row.map(|r| {
            let confirmed = r.try_get::<Option<i64>, _>(1).ok().flatten().is_some();
            (r.get::<String, _>(0), confirmed)
        }))
    }

    /// Turns the authenticator `sealed` on (confirmed now) and stores `code_hashes` as the
    /// account's recovery codes, voiding any earlier set, in one transaction; `false` when
    /// the account has a confirmed authenticator already.
    pub async fn enable_totp(
        &self,
        user_id: &str,
        sealed: &str,
        code_hashes: &[String],
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret, created_at, confirmed_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, \
             confirmed_at = excluded.confirmed_at WHERE mfa_totp.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        replace_codes(&mut tx, user_id, code_hashes, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A new set of recovery codes, voiding the old.
    pub async fn new_codes(
        &self,
        user_id: &str,
        code_hashes: &[String],
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        replace_codes(&mut tx, user_id, code_hashes, now).await?;
        tx.commit().await
    }

    /// Uses recovery code `code_hash` of `user_id`: `true` exactly once per code, however
    /// many requests race for it.
    pub async fn use_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(code_hash)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes the TOTP secret and every recovery code.
    pub async fn disable(&self, user_id: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        for table in ["mfa_totp", "mfa_recovery_codes"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

pub use crate::views::PasskeyView;

/// A stored passkey: its row's id and the `webauthn-rs` value.
pub struct StoredPasskey {
    pub user_id: String,
    pub passkey: Passkey,
}

/// What a passwordless sign-in needs of an account.
pub struct AccountState {
    pub email: String,
    pub verified: bool,
    pub disabled: bool,
}

fn parse_passkey(json: &str) -> Result<Passkey, sqlx::Error> {
    serde_json::from_str(json).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn passkey_json(p: &Passkey) -> Result<String, sqlx::Error> {
    serde_json::to_string(p).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

impl MfaStore {
    /// The passkeys of `user_id`, oldest first.
    pub async fn passkeys(&self, user_id: &str) -> Result<Vec<Passkey>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT passkey FROM mfa_passkeys WHERE user_id = $1 ORDER BY created_at, credential_id",
        )
        .bind(user_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| parse_passkey(&r.get::<String, _>(0)))
            .collect()
    }

    /// The list `user_id` sees (no key material).
    pub async fn passkey_views(&self, user_id: &str) -> Result<Vec<PasskeyView>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT credential_id, name, created_at, last_used_at FROM mfa_passkeys \
             WHERE user_id = $1 ORDER BY created_at, credential_id",
        )
        .bind(user_id)
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .iter()
            .map(|r| PasskeyView {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get(2),
                last_used_at: r.try_get::<Option<i64>, _>(3).ok().flatten(),
            })
            .collect())
    }

    /// The passkey with credential id `id` (base64url), whoever owns it.
    pub async fn passkey(&self, id: &str) -> Result<Option<StoredPasskey>, sqlx::Error> {
        let row = sqlx::query("SELECT user_id, passkey FROM mfa_passkeys WHERE credential_id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.map(|r| {
            Ok(StoredPasskey {
                user_id: r.get(0),
                passkey: parse_passkey(&r.get::<String, _>(1))?,
            })
        })
        .transpose()
    }

    /// Stores a new passkey of `user_id`; `false` when its credential id is taken (by any
    /// account: WebAuthn requires a credential to belong to one account only).
    pub async fn add_passkey(
        &self,
        user_id: &str,
        id: &str,
        passkey: &Passkey,
        name: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO mfa_passkeys (credential_id, user_id, passkey, name, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (credential_id) DO NOTHING",
        )
        .bind(id)
        .bind(user_id)
        .bind(passkey_json(passkey)?)
        .bind(name)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a use of passkey `id`: when, and its new counter when `changed`.
    pub async fn passkey_used(
        &self,
        id: &str,
        passkey: &Passkey,
        changed: bool,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        if changed {
            sqlx::query(
                "UPDATE mfa_passkeys SET passkey = $1, last_used_at = $2 WHERE credential_id = $3",
            )
            .bind(passkey_json(passkey)?)
            .bind(now)
            .bind(id)
            .execute(&self.db)
            .await?;
        } else {
            sqlx::query("UPDATE mfa_passkeys SET last_used_at = $1 WHERE credential_id = $2")
                .bind(now)
                .bind(id)
                .execute(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Removes passkey `id` of `user_id`; `false` when it has no such passkey.
    pub async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("DELETE FROM mfa_passkeys WHERE user_id = $1 AND credential_id = $2")
                .bind(user_id)
                .bind(id)
                .execute(&self.db)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The address of `user_id` and whether it may sign in; `None` when there is no account.
    pub async fn account(&self, user_id: &str) -> Result<Option<AccountState>, sqlx::Error> {
        let row =
            sqlx::query("SELECT email, email_verified_at, disabled_at FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.db)
                .await?;
        Ok(row.map(|r| AccountState {
            email: r.get(0),
            verified: r.try_get::<Option<i64>, _>(1).ok().flatten().is_some(),
            disabled: r.try_get::<Option<i64>, _>(2).ok().flatten().is_some(),
        }))
    }

    /// The roles of `user_id`, for a session made by a passkey alone.
    pub async fn roles(&self, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
        crate::users::roles::roles_of(&self.db, user_id).await
    }
}

async fn replace_codes(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    code_hashes: &[String],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    for h in code_hashes {
        sqlx::query(
            "INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at, used_at) VALUES ($1, $2, $3, NULL)",
        )
        .bind(user_id)
        .bind(h)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
