//! Users in our own database: SQLite by default (a file, created and migrated on first
//! start) or PostgreSQL, through one set of migrations (sqlx `Any`). An account made
//! through an external provider has no password (`password_hash` is `''`, which no
//! password matches) until a reset gives it one; its links live in [`super::identities`].

use super::{
    identities, Account, EmailHolder, ExternalIdentity, LinkedIdentity, ProviderError, SignedIn,
    Unlinked, UserProvider,
};
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

    pub fn mailer(&self) -> &Arc<Mailer> {
        &self.mailer
    }

    /// `user_id` as a sign-in, with its roles as of now (they go into the session's claims).
    /// The account as a provider sign-in: its address only when verified (an address a
    /// provider asserted without verifying it must never reach upstreams as `X-User-Email`).
    async fn signed_in(&self, user_id: String, email: String) -> Result<SignedIn, ProviderError> {
        let roles = super::roles::roles_of(&self.db, &user_id)
            .await
            .map_err(unavailable)?;
        let verified = sqlx::query("SELECT email_verified_at FROM users WHERE id = $1")
            .bind(&user_id)
            .fetch_optional(&self.db)
            .await
            .map_err(unavailable)?
            .and_then(|r| r.try_get::<Option<i64>, _>(0).ok().flatten())
            .is_some();
        Ok(SignedIn {
            user_id,
            email: if verified { email } else { String::new() },
            provider_data: None,
            roles,
        })
    }

    /// The address of account `user_id`, which may be signed in to: a missing or disabled
    /// account is `InvalidCredentials`, as for a password sign-in.
    async fn active_email(&self, user_id: &str) -> Result<String, ProviderError> {
        let row = sqlx::query("SELECT email, disabled_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.db)
            .await
            .map_err(unavailable)?
            .ok_or(ProviderError::InvalidCredentials)?;
        if row.try_get::<Option<i64>, _>(1).unwrap_or(None).is_some() {
            tracing::info!(user = %user_id, "identity link refused: account disabled");
            return Err(ProviderError::InvalidCredentials);
        }
        row.try_get(0).map_err(unavailable)
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

fn validation(field: &'static str, reason: &str) -> ProviderError {
    ProviderError::Validation {
        field,
        reason: reason.to_owned(),
    }
}

/// An account as [`UserProvider::email_holder`] shows it, from a [`BuiltinUsers::find`] row.
fn email_holder(row: &AnyRow) -> Result<EmailHolder, sqlx::Error> {
    Ok(EmailHolder {
        user_id: row.try_get("id")?,
        has_password: !row.try_get::<String, _>("password_hash")?.is_empty(),
        email_verified: row
            .try_get::<Option<i64>, _>("email_verified_at")?
            .is_some(),
    })
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
        let stored: Option<String> = row
            .as_ref()
            .map(|r| r.get::<String, _>("password_hash"))
            .filter(|h| !h.is_empty());
        // Unknown emails, and accounts without a password (made through a provider), verify
        // against a dummy hash: same answer and time as a wrong password.
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
    /// An account without a password (made through a provider) gets its first one this way.
    /// The link proves the mailbox, so an address it verifies takes the account's identities
    /// with it ([`identities::drop_unproven`]).
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
        identities::drop_unproven(&mut tx, &user_id)
            .await
            .map_err(unavailable)?;
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
    /// it, and the caller ends its sessions. Confirming the address also takes away the
    /// identities linked to the account ([`identities::drop_unproven`]), whose sessions end
    /// too. A link for an address already confirmed changes nothing.
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
        let dropped = identities::drop_unproven(&mut tx, &user_id)
            .await
            .map_err(unavailable)?;
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
            Some(row) if sets_password || dropped > 0 => {
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

    /// Does not ask for a verified address: the provider proved the person.
    async fn identity_sign_in(
        &self,
        identity: &ExternalIdentity,
    ) -> Result<Option<SignedIn>, ProviderError> {
        let Some(account) = identities::account_of(&self.db, &identity.provider, &identity.subject)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        if account.disabled {
            tracing::info!(user = %account.user_id, "identity sign-in refused: account disabled");
            return Err(ProviderError::InvalidCredentials);
        }
        identities::record_sign_in(
            &self.db,
            &identity.provider,
            &identity.subject,
            now_ms() as i64,
        )
        .await
        .map_err(unavailable)?;
        self.signed_in(account.user_id, account.email)
            .await
            .map(Some)
    }

    async fn email_holder(&self, email: &str) -> Result<Option<EmailHolder>, ProviderError> {
        self.find(email)
            .await?
            .as_ref()
            .map(email_holder)
            .transpose()
            .map_err(unavailable)
    }

    /// The account has no password (`''`). The address and the identity are each claimed
    /// with `ON CONFLICT DO NOTHING`, so a race with a sign-up of the same address or a
    /// creation from the same identity ends in `Validation` and a rollback, not in an error.
    async fn create_from_identity(
        &self,
        identity: &ExternalIdentity,
    ) -> Result<SignedIn, ProviderError> {
        let email = identity
            .email
            .clone()
            .ok_or_else(|| validation("email", "the provider gave no address"))?;
        let user_id = uuid::Uuid::new_v4().to_string();
        let now = now_ms() as i64;
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let created = sqlx::query(
            "INSERT INTO users (id, email, password_hash, email_verified_at, created_at, updated_at) \
             VALUES ($1, $2, '', $3, $4, $4) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&user_id)
        .bind(&email)
        .bind(identity.email_verified.then_some(now))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if created == 0 {
            return Err(validation("email", "taken"));
        }
        if !identities::link(&mut tx, &user_id, identity, now)
            .await
            .map_err(unavailable)?
        {
            return Err(validation("identity", "already linked to an account"));
        }
        tx.commit().await.map_err(unavailable)?;
        // A new account has no roles yet; an unverified address is not passed on.
        Ok(SignedIn {
            user_id,
            email: if identity.email_verified {
                email
            } else {
                String::new()
            },
            provider_data: None,
            roles: Vec::new(),
        })
    }

    /// Nobody ever proved the mailbox of this account (a sign-up never verified), and the
    /// provider now has: the account becomes the identity's. Its password (chosen by whoever
    /// signed up) and every open link go, the address counts as verified, and the identity
    /// is linked, in one transaction; the caller ends the account's sessions.
    async fn claim_unverified(
        &self,
        user_id: &str,
        identity: &ExternalIdentity,
    ) -> Result<SignedIn, ProviderError> {
        let now = now_ms() as i64;
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let claimed = sqlx::query(
            "UPDATE users SET password_hash = '', email_verified_at = $1, updated_at = $1 \
             WHERE id = $2 AND email_verified_at IS NULL AND disabled_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if claimed != 1 {
            return Err(validation("email", "the account changed meanwhile"));
        }
        retire_links(&mut tx, user_id, None, now).await?;
        if !identities::link(&mut tx, user_id, identity, now)
            .await
            .map_err(unavailable)?
        {
            return Err(validation("identity", "already linked to an account"));
        }
        tx.commit().await.map_err(unavailable)?;
        let email = identity.email.clone().unwrap_or_default();
        self.signed_in(user_id.to_owned(), email).await
    }

    /// Linking again what is linked to this account already only records the sign-in.
    async fn link_identity(
        &self,
        user_id: &str,
        identity: &ExternalIdentity,
    ) -> Result<SignedIn, ProviderError> {
        let email = self.active_email(user_id).await?;
        // The connection goes back before the roles are read (a pool of one must not wait
        // on itself).
        let linked = {
            let mut conn = self.db.acquire().await.map_err(unavailable)?;
            identities::link(&mut conn, user_id, identity, now_ms() as i64)
                .await
                .map_err(unavailable)?
        };
        if !linked {
            return Err(validation("identity", "already linked to an account"));
        }
        self.signed_in(user_id.to_owned(), email).await
    }

    async fn identities(&self, user_id: &str) -> Result<Vec<LinkedIdentity>, ProviderError> {
        identities::list(&self.db, user_id)
            .await
            .map_err(unavailable)
    }

    async fn unlink_identity(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Unlinked, ProviderError> {
        identities::unlink(&self.db, user_id, provider)
            .await
            .map_err(unavailable)
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

    /// A built-in store on an SQLite file in `dir`, with cheap hashing and verification
    /// required (so the tests show identity sign-in does not ask for it).
    async fn store(dir: &tempfile::TempDir) -> BuiltinUsers {
        let url = format!("sqlite://{}", dir.path().join("users.db").display());
        let db = connect(&url, 4, Duration::from_secs(5))
            .await
            .expect("connect");
        let mail = crate::config::MailConfig {
            outbox_dir: dir.path().join("outbox").display().to_string(),
            ..Default::default()
        };
        let pages = crate::pages::Pages::new(&Default::default(), &mail.base_url).expect("pages");
        let counters = Arc::new(authflow_shared::store::MemorySessionStore::new());
        let gate = crate::mail::MailGate::new(counters, Duration::from_secs(60));
        let mailer = Mailer::new(&mail, &mail.base_url, gate, Arc::new(pages)).expect("mailer");
        let hasher = PasswordHasherPool::new(8, 1, 1).expect("hasher");
        let hour = Duration::from_secs(3600);
        BuiltinUsers::new(db, hasher, Arc::new(mailer), true, hour, hour)
    }

    fn identity(provider: &str, subject: &str, email: &str, verified: bool) -> ExternalIdentity {
        ExternalIdentity {
            provider: provider.into(),
            subject: subject.into(),
            email: Some(email.into()),
            email_verified: verified,
        }
    }

    /// An account with a verified address and `password`, as a finished sign-up leaves it.
    async fn password_account(users: &BuiltinUsers, email: &str, password: &str) -> String {
        let hash = users.hasher.hash(password).await.expect("hash");
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, email_verified_at, created_at, updated_at) \
             VALUES ($1, $2, $3, 1, 1, 1)",
        )
        .bind(&id)
        .bind(email)
        .bind(hash)
        .execute(&users.db)
        .await
        .expect("user");
        id
    }

    fn is_validation(r: Result<SignedIn, ProviderError>, field: &str, reason: &str) -> bool {
        match r {
            Err(ProviderError::Validation {
                field: f,
                reason: r,
            }) => f == field && r == reason,
            _ => false,
        }
    }

    #[tokio::test]
    async fn an_identity_creates_a_passwordless_account_and_then_signs_in_to_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        let gh = identity("github", "42", "ann@example.com", true);
        assert!(users.identity_sign_in(&gh).await.expect("lookup").is_none());
        let made = users.create_from_identity(&gh).await.expect("create");
        assert_eq!(made.email, "ann@example.com");
        let holder = users
            .email_holder("ann@example.com")
            .await
            .expect("holder")
            .expect("an account");
        assert_eq!(
            holder,
            EmailHolder {
                user_id: made.user_id.clone(),
                has_password: false,
                email_verified: true,
            }
        );
        let again = users
            .identity_sign_in(&gh)
            .await
            .expect("sign-in")
            .expect("linked");
        assert_eq!(
            (again.user_id.as_str(), again.email.as_str()),
            (made.user_id.as_str(), "ann@example.com")
        );
        let linked = users.identities(&made.user_id).await.expect("list");
        assert_eq!(linked.len(), 1);
        assert_eq!(linked[0].provider, "github");
        assert_eq!(linked[0].email.as_deref(), Some("ann@example.com"));
        assert!(linked[0].last_sign_in_at >= linked[0].linked_at);
        assert!(users
            .email_holder("bob@example.com")
            .await
            .expect("none")
            .is_none());
    }

    #[tokio::test]
    async fn an_unverified_address_stays_unverified_and_no_address_makes_no_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        let made = users
            .create_from_identity(&identity("oidc", "s1", "ann@example.com", false))
            .await
            .expect("create");
        let holder = users.email_holder("ann@example.com").await.expect("holder");
        assert!(holder.is_some_and(|h| !h.email_verified && h.user_id == made.user_id));
        let mut nameless = identity("oidc", "s2", "", false);
        nameless.email = None;
        assert!(is_validation(
            users.create_from_identity(&nameless).await,
            "email",
            "the provider gave no address"
        ));
    }

    #[tokio::test]
    async fn a_password_never_opens_a_provider_made_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        users
            .create_from_identity(&identity("github", "42", "ann@example.com", true))
            .await
            .expect("create");
        for guess in ["", "anything at all"] {
            assert!(matches!(
                users.sign_in("ann@example.com", guess).await,
                Err(ProviderError::InvalidCredentials)
            ));
        }
    }

    #[tokio::test]
    async fn a_disabled_account_refuses_its_identities() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        let gh = identity("github", "42", "ann@example.com", true);
        let made = users.create_from_identity(&gh).await.expect("create");
        sqlx::query("UPDATE users SET disabled_at = 1 WHERE id = $1")
            .bind(&made.user_id)
            .execute(&users.db)
            .await
            .expect("disable");
        assert!(matches!(
            users.identity_sign_in(&gh).await,
            Err(ProviderError::InvalidCredentials)
        ));
        let other = identity("oidc", "s1", "ann@example.com", true);
        assert!(matches!(
            users.link_identity(&made.user_id, &other).await,
            Err(ProviderError::InvalidCredentials)
        ));
        assert_eq!(
            users.identities(&made.user_id).await.expect("list").len(),
            1
        );
    }

    #[tokio::test]
    async fn an_identity_links_to_one_account_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        let ann = password_account(&users, "ann@example.com", "ann's password").await;
        let bob = password_account(&users, "bob@example.com", "bob's password").await;
        sqlx::query("INSERT INTO user_roles (user_id, role, granted_at) VALUES ($1, 'ops', 1)")
            .bind(&ann)
            .execute(&users.db)
            .await
            .expect("role");
        let gh = identity("github", "42", "ann@work.example", false);
        let linked = users.link_identity(&ann, &gh).await.expect("link");
        assert_eq!(linked.user_id, ann);
        assert_eq!(linked.email, "ann@example.com");
        assert_eq!(linked.roles, vec!["ops".to_owned()]);
        users.link_identity(&ann, &gh).await.expect("link again");
        assert_eq!(users.identities(&ann).await.expect("list").len(), 1);
        let taken = "already linked to an account";
        assert!(is_validation(
            users.link_identity(&bob, &gh).await,
            "identity",
            taken
        ));
        assert!(is_validation(
            users.create_from_identity(&gh).await,
            "identity",
            taken
        ));
        assert!(users
            .email_holder("ann@work.example")
            .await
            .expect("holder")
            .is_none());
        let signed_in = users.identity_sign_in(&gh).await.expect("sign-in");
        assert!(signed_in.is_some_and(|s| s.user_id == ann && s.roles == ["ops"]));
        let ann_at_oidc = identity("oidc", "s1", "ann@example.com", true);
        assert!(is_validation(
            users.create_from_identity(&ann_at_oidc).await,
            "email",
            "taken"
        ));
        assert!(users
            .identity_sign_in(&ann_at_oidc)
            .await
            .expect("lookup")
            .is_none());
    }

    #[tokio::test]
    async fn unlinking_keeps_the_last_way_to_sign_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        let gh = identity("github", "42", "ann@example.com", true);
        let ann = users
            .create_from_identity(&gh)
            .await
            .expect("create")
            .user_id;
        assert_eq!(
            users.unlink_identity(&ann, "github").await.expect("unlink"),
            Unlinked::LastWay
        );
        assert_eq!(
            users.unlink_identity(&ann, "oidc").await.expect("unlink"),
            Unlinked::NotLinked
        );
        let oidc = identity("oidc", "s1", "ann@example.com", true);
        users.link_identity(&ann, &oidc).await.expect("link");
        assert_eq!(
            users.unlink_identity(&ann, "github").await.expect("unlink"),
            Unlinked::Done
        );
        assert_eq!(
            users.unlink_identity(&ann, "github").await.expect("unlink"),
            Unlinked::NotLinked
        );
        assert_eq!(
            users.unlink_identity(&ann, "oidc").await.expect("unlink"),
            Unlinked::LastWay
        );
        assert!(users
            .identity_sign_in(&oidc)
            .await
            .expect("sign-in")
            .is_some());

        let bob = password_account(&users, "bob@example.com", "bob's password").await;
        let bob_gh = identity("github", "7", "bob@example.com", true);
        users.link_identity(&bob, &bob_gh).await.expect("link");
        assert_eq!(
            users.unlink_identity(&bob, "github").await.expect("unlink"),
            Unlinked::Done
        );
        assert!(users
            .identity_sign_in(&bob_gh)
            .await
            .expect("lookup")
            .is_none());
        assert!(users.identities(&bob).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn two_unlinks_at_once_leave_one_way_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        let gh = identity("github", "42", "ann@example.com", true);
        let ann = users
            .create_from_identity(&gh)
            .await
            .expect("create")
            .user_id;
        let oidc = identity("oidc", "s1", "ann@example.com", true);
        users.link_identity(&ann, &oidc).await.expect("link");
        // Two open connections, so that neither unlink waits for one to be made.
        let warm = (users.db.acquire().await, users.db.acquire().await);
        drop(warm);
        let (a, b) = tokio::join!(
            users.unlink_identity(&ann, "github"),
            users.unlink_identity(&ann, "oidc")
        );
        let mut outcomes = [a.expect("unlink"), b.expect("unlink")];
        outcomes.sort_by_key(|o| *o == Unlinked::LastWay);
        assert_eq!(outcomes, [Unlinked::Done, Unlinked::LastWay]);
        assert_eq!(users.identities(&ann).await.expect("list").len(), 1);
    }

    /// Someone signs in at a provider that asserts Ann's address unverified, and so owns a
    /// new account under it; Ann signs up with a password and follows the mailed link.
    #[tokio::test]
    async fn verifying_the_address_takes_the_identities_of_an_unverified_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        let squatter = identity("oidc", "mallory", "ann@example.com", false);
        let made = users.create_from_identity(&squatter).await.expect("create");
        let hash = users.hasher.hash("ann's password").await.expect("hash");
        let verified = users
            .record_sign_up("ann@example.com", &hash, "mailed-link")
            .await
            .expect("sign-up");
        assert!(!verified);
        let ended = users.verify_email("mailed-link").await.expect("verify");
        assert_eq!(ended.map(|a| a.user_id), Some(made.user_id.clone()));
        assert!(users
            .identities(&made.user_id)
            .await
            .expect("list")
            .is_empty());
        assert!(users
            .identity_sign_in(&squatter)
            .await
            .expect("lookup")
            .is_none());
        let ann = users.sign_in("ann@example.com", "ann's password").await;
        assert!(ann.is_ok_and(|s| s.user_id == made.user_id));
    }

    #[tokio::test]
    async fn a_reset_gives_a_provider_made_account_its_password_and_takes_unproven_identities() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = store(&dir).await;
        let unproven = identity("oidc", "mallory", "ann@example.com", false);
        let ann = users
            .create_from_identity(&unproven)
            .await
            .expect("create")
            .user_id;
        let proven = identity("github", "7", "bob@example.com", true);
        let bob = users
            .create_from_identity(&proven)
            .await
            .expect("create")
            .user_id;
        for (user, password) in [(&ann, "ann's password"), (&bob, "bob's password")] {
            let token = users
                .issue_token(user, RESET_PASSWORD, users.reset_ttl, None)
                .await
                .expect("token");
            users.reset_password(&token, password).await.expect("reset");
        }
        assert!(users.identities(&ann).await.expect("list").is_empty());
        assert!(users
            .sign_in("ann@example.com", "ann's password")
            .await
            .is_ok());
        // Bob's address was verified by his provider: his link stays.
        assert_eq!(users.identities(&bob).await.expect("list").len(), 1);
        assert!(users
            .sign_in("bob@example.com", "bob's password")
            .await
            .is_ok());
        let holder = users.email_holder("bob@example.com").await.expect("holder");
        assert!(holder.is_some_and(|h| h.has_password && h.email_verified));
    }
}
