//! Users in our own database: SQLite by default (a file, created and migrated on first
//! start) or PostgreSQL, through one set of migrations (sqlx `Any`).

use super::{Account, ProviderError, SignedIn, UserProvider};
use crate::mail::Mailer;
use crate::password::PasswordHasherPool;
use async_trait::async_trait;
use authflow_shared::now_ms;
use authflow_shared::session::SessionRecord;
use authflow_shared::token::{hash_hex, random_token};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::sync::Arc;
use std::time::Duration;

const VERIFY_EMAIL: &str = "verify_email";
const RESET_PASSWORD: &str = "reset_password";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the database at `url`, creating an SQLite file's directory if needed, and runs the
/// migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<AnyPool, DbError> {
    sqlx::any::install_default_drivers();
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or(path);
        if let Some(dir) = std::path::Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
    }
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

pub struct BuiltinUsers {
    db: AnyPool,
    hasher: PasswordHasherPool,
    mailer: Arc<Mailer>,
    require_verification: bool,
    verification_ttl: Duration,
    reset_ttl: Duration,
}

impl BuiltinUsers {
    pub fn new(
        db: AnyPool,
        hasher: PasswordHasherPool,
        mailer: Arc<Mailer>,
        require_verification: bool,
        verification_ttl: Duration,
        reset_ttl: Duration,
    ) -> Self {
        BuiltinUsers {
            db,
            hasher,
            mailer,
            require_verification,
            verification_ttl,
            reset_ttl,
        }
    }

    pub fn db(&self) -> &AnyPool {
        &self.db
    }

    async fn find(&self, email: &str) -> Result<Option<AnyRow>, ProviderError> {
        sqlx::query(
            "SELECT id, email, password_hash, email_verified_at FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.db)
        .await
        .map_err(unavailable)
    }

    /// Stores the hash of a fresh one-time token and returns the token.
    async fn issue_token(
        &self,
        user_id: &str,
        purpose: &str,
        ttl: Duration,
    ) -> Result<String, ProviderError> {
        let token = random_token(32);
        sqlx::query("INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(hash_hex(token.as_bytes()))
            .bind(user_id)
            .bind(purpose)
            .bind((now_ms() + ttl.as_millis() as u64) as i64)
            .execute(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(token)
    }

    /// Marks a valid, unused, unexpired token used, atomically; returns its user id.
    async fn burn_token(&self, token: &str, purpose: &str) -> Result<String, ProviderError> {
        let now = now_ms() as i64;
        let row = sqlx::query(
            "UPDATE one_time_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $4 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(hash_hex(token.as_bytes()))
        .bind(purpose)
        .bind(now)
        .fetch_optional(&self.db)
        .await
        .map_err(unavailable)?;
        row.map(|r| r.get::<String, _>(0))
            .ok_or(ProviderError::InvalidToken)
    }

    async fn create_user(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<String>, ProviderError> {
        let hash = self
            .hasher
            .hash(password)
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms() as i64;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, email_verified_at, created_at, updated_at) \
             VALUES ($1, $2, $3, NULL, $4, $5) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&id)
        .bind(email)
        .bind(hash)
        .bind(now)
        .bind(now)
        .execute(&self.db)
        .await
        .map_err(unavailable)?;
        Ok((inserted.rows_affected() == 1).then_some(id))
    }
}

fn unavailable(e: sqlx::Error) -> ProviderError {
    ProviderError::Unavailable(e.to_string())
}

#[async_trait]
impl UserProvider for BuiltinUsers {
    async fn sign_up(&self, email: &str, password: &str) -> Result<(), ProviderError> {
        if self.find(email).await?.is_some() {
            // Same work as a new account (one hash), then tell the owner instead.
            let _ = self.hasher.hash(password).await;
            if let Err(e) = self.mailer.send_already_registered(email).await {
                tracing::error!(error = %e, "could not send already-registered email");
            }
            return Ok(());
        }
        let Some(user_id) = self.create_user(email, password).await? else {
            // Lost a race with a concurrent sign-up of the same address.
            return Ok(());
        };
        let token = self
            .issue_token(&user_id, VERIFY_EMAIL, self.verification_ttl)
            .await?;
        if let Err(e) = self.mailer.send_verification(email, &token).await {
            tracing::error!(error = %e, "could not send verification email");
        }
        Ok(())
    }

    async fn sign_in(&self, email: &str, password: &str) -> Result<SignedIn, ProviderError> {
        let row = self.find(email).await?;
        let stored: Option<String> = row.as_ref().map(|r| r.get("password_hash"));
        // Unknown emails verify against a dummy hash: same time as a wrong password.
        if !self.hasher.verify(password, stored.as_deref()).await {
            return Err(ProviderError::InvalidCredentials);
        }
        let row = row.ok_or(ProviderError::InvalidCredentials)?;
        let verified: Option<i64> = row.try_get("email_verified_at").unwrap_or(None);
        if self.require_verification && verified.is_none() {
            return Err(ProviderError::EmailNotVerified);
        }
        let user_id: String = row.get("id");
        if stored
            .as_deref()
            .is_some_and(|h| self.hasher.needs_rehash(h))
        {
            if let Ok(h) = self.hasher.hash(password).await {
                let _ = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(h)
                    .bind(&user_id)
                    .execute(&self.db)
                    .await;
            }
        }
        Ok(SignedIn {
            user_id,
            email: row.get("email"),
            provider_data: None,
        })
    }

    async fn signed_out(&self, _record: &SessionRecord) {}

    async fn forgot_password(&self, email: &str) -> Result<(), ProviderError> {
        let Some(row) = self.find(email).await? else {
            return Ok(());
        };
        let user_id: String = row.get("id");
        // A new link replaces any earlier unused one.
        sqlx::query(
            "DELETE FROM one_time_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        )
        .bind(&user_id)
        .bind(RESET_PASSWORD)
        .execute(&self.db)
        .await
        .map_err(unavailable)?;
        let token = self
            .issue_token(&user_id, RESET_PASSWORD, self.reset_ttl)
            .await?;
        if let Err(e) = self
            .mailer
            .send_password_reset(email, &token, self.reset_ttl.as_secs() / 60)
            .await
        {
            tracing::error!(error = %e, "could not send password-reset email");
        }
        Ok(())
    }

    async fn reset_account(&self, token: &str) -> Result<Option<Account>, ProviderError> {
        let row = sqlx::query(
            "SELECT u.id, u.email FROM one_time_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > $3",
        )
        .bind(hash_hex(token.as_bytes()))
        .bind(RESET_PASSWORD)
        .bind(now_ms() as i64)
        .fetch_optional(&self.db)
        .await
        .map_err(unavailable)?;
        let row = row.ok_or(ProviderError::InvalidToken)?;
        Ok(Some(Account {
            user_id: row.get(0),
            email: row.get(1),
        }))
    }

    /// Hashes first (the slow part, which can fail on its own), then burns the token and
    /// stores the hash in one transaction: the link is used up only with the password set.
    async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<Account, ProviderError> {
        let hash = self
            .hasher
            .hash(new_password)
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let now = now_ms() as i64;
        let user_id: String = sqlx::query(
            "UPDATE one_time_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $4 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(hash_hex(token.as_bytes()))
        .bind(RESET_PASSWORD)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .map(|r| r.get(0))
        .ok_or(ProviderError::InvalidToken)?;
        // The reset link proved control of the address, so it also counts as verification.
        let email: String = sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2, email_verified_at = COALESCE(email_verified_at, $3) WHERE id = $4 RETURNING email",
        )
        .bind(hash)
        .bind(now)
        .bind(now)
        .bind(&user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?
        .get(0);
        tx.commit().await.map_err(unavailable)?;
        Ok(Account { user_id, email })
    }

    async fn verify_email(&self, token: &str) -> Result<(), ProviderError> {
        let user_id = self.burn_token(token, VERIFY_EMAIL).await?;
        sqlx::query(
            "UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email_verified_at IS NULL",
        )
        .bind(now_ms() as i64)
        .bind(user_id)
        .execute(&self.db)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn health(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.db)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn name(&self) -> &'static str {
        "builtin"
    }
}
