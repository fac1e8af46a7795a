//! The second factors in the users database: one TOTP secret per account (encrypted, active
//! once confirmed) and the account's recovery codes (keyed hashes, single use).

use sqlx::{AnyPool, Row};

/// What an account has enrolled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enrolled {
    pub totp: bool,
    /// Unused recovery codes left.
    pub recovery_codes: usize,
}

impl Enrolled {
    /// Whether the account has a second factor at all (a sign-in then needs it).
    pub fn any(&self) -> bool {
        self.totp
    }

    /// The methods a sign-in may finish with, in the API's words.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.totp {
            m.push("totp");
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
        Ok(Enrolled {
            totp,
            recovery_codes: left.max(0) as usize,
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

    /// Stores a new unconfirmed secret, replacing an unconfirmed one; `false` when a
    /// confirmed one exists (disable it first).
    pub async fn begin_totp(
        &self,
        user_id: &str,
        sealed: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret, created_at, confirmed_at) VALUES ($1, $2, $3, NULL) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at \
             WHERE mfa_totp.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Confirms the secret and stores `code_hashes` as the account's recovery codes, voiding
    /// any earlier set, in one transaction; `false` when there was nothing to confirm.
    pub async fn confirm_totp(
        &self,
        user_id: &str,
        code_hashes: &[String],
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE mfa_totp SET confirmed_at = $1 WHERE user_id = $2 AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
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
