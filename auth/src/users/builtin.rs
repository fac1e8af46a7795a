//! Users in our own database: SQLite by default (a file, created and migrated on first
//! start) or PostgreSQL, through one set of migrations (sqlx `Any`).

use super::{Account, ProviderError, SignedIn, UserProvider};
use crate::credentials::normalize_email;
use crate::mail::{MailKind, Mailer};
use crate::password::PasswordHasherPool;
use async_trait::async_trait;
use authflow_shared::digest::hash_hex;
use authflow_shared::now_ms;
use authflow_shared::session::SessionRecord;
use authflow_shared::token::random_token;
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

/// Opens the database at `url`, creating an SQLite file (and its directory) if needed, and
/// runs the migrations.
/// `acquire_timeout` bounds how long a request waits for a connection: with the database
/// down, requests answer 503 after it instead of hanging past the gateway's read timeout.
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<AnyPool, DbError> {
    sqlx::any::install_default_drivers();
    let url = &sqlite_creating(url);
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
        .acquire_timeout(acquire_timeout)
        .connect(url)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// An SQLite URL that creates its file: sqlx opens `sqlite://path` read-write but refuses
/// a file that does not exist ("unable to open database file"), where a person expects it
/// made, as `?mode=rwc` does. A URL that names a `mode` keeps it; other URLs are unchanged.
pub fn sqlite_creating(url: &str) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_owned();
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:" || path.is_empty();
    if in_memory || query.split('&').any(|kv| kv.starts_with("mode=")) {
        return url.to_owned();
    }
    let sep = if query.is_empty() { "?" } else { "&" };
    let sep = if url.ends_with('?') { "" } else { sep };
    format!("{url}{sep}mode=rwc")
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
            "SELECT id, email, password_hash, email_verified_at, disabled_at FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.db)
        .await
        .map_err(unavailable)
    }

    /// Stores the hash of a fresh one-time token and returns the token. A verification token
    /// carries the password hash of the sign-up that asked for it.
    async fn issue_token(
        &self,
        user_id: &str,
        purpose: &str,
        ttl: Duration,
        password_hash: Option<&str>,
    ) -> Result<String, ProviderError> {
        let token = random_token(32);
        sqlx::query("INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at, password_hash) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash_hex(token.as_bytes()))
            .bind(user_id)
            .bind(purpose)
            .bind((now_ms() + ttl.as_millis() as u64) as i64)
            .bind(password_hash)
            .execute(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(token)
    }

    /// Uses up every open token of `purpose` for `user_id` (a newer one replaces them).
    async fn retire_tokens(&self, user_id: &str, purpose: &str) -> Result<(), ProviderError> {
        let mut conn = self.db.acquire().await.map_err(unavailable)?;
        retire_links(&mut conn, user_id, Some(purpose), now_ms() as i64).await
    }

    /// The one write of every sign-up, the same statements whatever the address holds, so
    /// that a registered address answers in the time of a new one (ASVS 5.0 6.3.8): creates
    /// the account if the address is new, retires the account's open verification links,
    /// and stores `token` as the new one. For an account still pending that is a live link
    /// confirming `hash`; for a verified account it is born used (nobody receives it, and it
    /// could confirm nothing). Returns whether the address was already verified.
    async fn record_sign_up(
        &self,
        email: &str,
        hash: &str,
        token: &str,
    ) -> Result<bool, ProviderError> {
        let now = now_ms() as i64;
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, email_verified_at, created_at, updated_at) \
             VALUES ($1, $2, $3, NULL, $4, $4) ON CONFLICT (email) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(email)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let row = sqlx::query("SELECT id, email_verified_at FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        let user_id: String = row.try_get(0).map_err(unavailable)?;
        let verified = row.try_get::<Option<i64>, _>(1).unwrap_or(None).is_some();
        retire_links(&mut tx, &user_id, Some(VERIFY_EMAIL), now).await?;
        sqlx::query(
            "INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at, password_hash, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash_hex(token.as_bytes()))
        .bind(&user_id)
        .bind(VERIFY_EMAIL)
        .bind(now + self.verification_ttl.as_millis() as i64)
        .bind(hash)
        .bind(verified.then_some(now))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(verified)
    }
}

/// Uses up the open links of `user_id`: those of `purpose`, or every one (`None`: the
/// password changed, so no earlier reset or verification link may set another).
async fn retire_links(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    purpose: Option<&str>,
    now: i64,
) -> Result<(), ProviderError> {
    let query = match purpose {
        Some(purpose) => sqlx::query(
            "UPDATE one_time_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(purpose),
        None => sqlx::query(
            "UPDATE one_time_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id),
    };
    query.execute(conn).await.map_err(unavailable)?;
    Ok(())
}

fn unavailable(e: sqlx::Error) -> ProviderError {
    ProviderError::Unavailable(e.to_string())
}

#[async_trait]
impl UserProvider for BuiltinUsers {
    /// The same work whatever the address holds (ASVS 5.0 6.3.8): one password hash, one
    /// write ([`BuiltinUsers::record_sign_up`]), one ask of the mail cooldown and one mail
    /// handed to the queue, which sends it after the answer. A new address gets its account
    /// and a link; a verified one, a note to its owner; a sign-up still pending, a fresh
    /// link that confirms *this* sign-up's password and replaces the earlier links, so
    /// whoever signed up first with someone else's address cannot have their password
    /// confirmed by the owner's click.
    async fn sign_up(&self, email: &str, password: &str, lang: &str) -> Result<(), ProviderError> {
        let hash = self
            .hasher
            .hash(password)
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let token = random_token(32);
        let registered = self.record_sign_up(email, &hash, &token).await?;
        let (kind, mail) = if registered {
            (
                MailKind::AlreadyRegistered,
                self.mailer.already_registered(email, lang),
            )
        } else {
            (
                MailKind::Verification,
                self.mailer.verification(email, &token, lang),
            )
        };
        if self.mailer.may_send(kind, email, "").await {
            self.mailer.queue(mail);
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
        let disabled: Option<i64> = row.try_get("disabled_at").unwrap_or(None);
        if disabled.is_some() {
            // Answered like a wrong password: a disabled account is no account to sign in to.
            tracing::info!(user = %user_id, "sign-in refused: account disabled");
            return Err(ProviderError::InvalidCredentials);
        }
        let roles = super::roles::roles_of(&self.db, &user_id)
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
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
            roles,
        })
    }

    async fn set_password(&self, who: &SignedIn, new_password: &str) -> Result<(), ProviderError> {
        let user_id = who.user_id.as_str();
        let hash = self
            .hasher
            .hash(new_password)
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let now = now_ms() as i64;
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        retire_links(&mut tx, user_id, None, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn user_id_of(&self, email: &str) -> Result<Option<String>, ProviderError> {
        Ok(self
            .find(&normalize_email(email))
            .await?
            .map(|row| row.get::<String, _>("id")))
    }

    async fn signed_out(&self, _record: &SessionRecord) {}

    async fn familiar_address(
        &self,
        account: &str,
        address: &str,
        within: Duration,
    ) -> Result<bool, ProviderError> {
        let since = now_ms().saturating_sub(within.as_millis() as u64) as i64;
        let row = sqlx::query(
            "SELECT 1 FROM sign_in_addresses WHERE account = $1 AND address = $2 AND last_success_at > $3",
        )
        .bind(account)
        .bind(hash_hex(address.as_bytes()))
        .bind(since)
        .fetch_optional(&self.db)
        .await
        .map_err(unavailable)?;
        Ok(row.is_some())
    }

    /// Upserts the address, and drops the account's addresses too old to count, so an
    /// account keeps only the few places it signs in from.
    async fn remember_address(&self, account: &str, address: &str) -> Result<(), ProviderError> {
        let now = now_ms() as i64;
        let stale = now - crate::throttle::FAMILIAR_FOR.as_millis() as i64;
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO sign_in_addresses (account, address, last_success_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account, address) DO UPDATE SET last_success_at = excluded.last_success_at",
        )
        .bind(account)
        .bind(hash_hex(address.as_bytes()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query("DELETE FROM sign_in_addresses WHERE account = $1 AND last_success_at <= $2")
            .bind(account)
            .bind(stale)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn forget_addresses(&self, account: &str) -> Result<(), ProviderError> {
        sqlx::query("DELETE FROM sign_in_addresses WHERE account = $1")
            .bind(account)
            .execute(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forgot_password(&self, email: &str, lang: &str) -> Result<(), ProviderError> {
        let Some(row) = self.find(email).await? else {
            return Ok(());
        };
        let user_id: String = row.get("id");
        // A new link replaces any earlier unused one.
        self.retire_tokens(&user_id, RESET_PASSWORD).await?;
        let token = self
            .issue_token(&user_id, RESET_PASSWORD, self.reset_ttl, None)
            .await?;
        self.mailer.queue(self.mailer.password_reset(
            email,
            &token,
            self.reset_ttl.as_secs() / 60,
            lang,
        ));
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
        retire_links(&mut tx, &user_id, None, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Account { user_id, email })
    }

    async fn verification_account(&self, token: &str) -> Result<Option<Account>, ProviderError> {
        let row = sqlx::query(
            "SELECT u.id, u.email FROM one_time_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > $3 \
             AND t.password_hash IS NOT NULL AND u.email_verified_at IS NULL",
        )
        .bind(hash_hex(token.as_bytes()))
        .bind(VERIFY_EMAIL)
        .bind(now_ms() as i64)
        .fetch_optional(&self.db)
        .await
        .map_err(unavailable)?;
        Ok(row.map(|row| Account {
            user_id: row.get(0),
            email: row.get(1),
        }))
    }

    /// Confirms the address and, with it, the password chosen in the sign-up that sent this
    /// link; that is a password change, so the account's other open links are retired with
    /// it, and the caller ends its sessions. A link for an address already confirmed
    /// changes nothing.
    async fn verify_email(&self, token: &str) -> Result<Option<Account>, ProviderError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let now = now_ms() as i64;
        let row = sqlx::query(
            "UPDATE one_time_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $4 \
             RETURNING user_id, password_hash",
        )
        .bind(now)
        .bind(hash_hex(token.as_bytes()))
        .bind(VERIFY_EMAIL)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .ok_or(ProviderError::InvalidToken)?;
        let user_id: String = row.get(0);
        let chosen: Option<String> = row.try_get(1).unwrap_or(None);
        let sets_password = chosen.is_some();
        let confirmed = sqlx::query(
            "UPDATE users SET email_verified_at = $1, password_hash = COALESCE($2, password_hash), updated_at = $1 \
             WHERE id = $3 AND email_verified_at IS NULL RETURNING email",
        )
        .bind(now)
        .bind(chosen)
        .bind(&user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let replaced = match confirmed {
            Some(row) if sets_password => {
                retire_links(&mut tx, &user_id, None, now).await?;
                Some(Account {
                    user_id,
                    email: row.get(0),
                })
            }
            _ => None,
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(replaced)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(
            sqlite_creating("sqlite://data/users.db"),
            "sqlite://data/users.db?mode=rwc"
        );
        assert_eq!(
            sqlite_creating("sqlite:users.db?cache=shared"),
            "sqlite:users.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_creating("sqlite://x.db?mode=ro"),
            "sqlite://x.db?mode=ro"
        );
        assert_eq!(sqlite_creating("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(sqlite_creating("postgres://a@b/c"), "postgres://a@b/c");
    }

    #[tokio::test]
    async fn a_plain_sqlite_url_creates_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sub/users.db");
        let url = format!("sqlite://{}", file.display());
        connect(&url, 1, Duration::from_secs(3))
            .await
            .expect("connect");
        assert!(file.is_file());
    }
}
