//! The built-in provider's links from external identities (provider, subject) to accounts:
//! the SQL of the `identities` table (migration `20261206000001_identities.sql`). The
//! account side (users, passwords, mailed links) stays in [`super::builtin`], which calls
//! these, some inside its own transactions. Every statement runs unchanged on SQLite and
//! PostgreSQL.

use super::{ExternalIdentity, LinkedIdentity, Unlinked};
use sqlx::{AnyConnection, AnyPool, Row};

/// The account an identity opens, as a sign-in must check it.
#[derive(Debug)]
pub(super) struct LinkedAccount {
    pub user_id: String,
    pub email: String,
    pub disabled: bool,
}

/// The account `(provider, subject)` is linked to; `None` when none is.
pub(super) async fn account_of(
    db: &AnyPool,
    provider: &str,
    subject: &str,
) -> Result<Option<LinkedAccount>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.id, u.email, u.disabled_at FROM identities i JOIN users u ON u.id = i.user_id \
         WHERE i.provider = $1 AND i.subject = $2",
    )
    .bind(provider)
    .bind(subject)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(LinkedAccount {
            user_id: row.try_get(0)?,
            email: row.try_get(1)?,
            disabled: row.try_get::<Option<i64>, _>(2)?.is_some(),
        })
    })
    .transpose()
}

/// Records a sign-in through `(provider, subject)` at `now`.
pub(super) async fn record_sign_in(
    db: &AnyPool,
    provider: &str,
    subject: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE identities SET last_sign_in_at = $1 WHERE provider = $2 AND subject = $3")
        .bind(now)
        .bind(provider)
        .bind(subject)
        .execute(db)
        .await?;
    Ok(())
}

/// Links `identity` to `user_id`, in one statement so that two links of the same identity
/// cannot both win. `true` when it is now linked to `user_id` (new, or linked before, which
/// counts as a sign-in at `now`); `false` when another account holds it, which is left as
/// it was.
pub(super) async fn link(
    conn: &mut AnyConnection,
    user_id: &str,
    identity: &ExternalIdentity,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO identities (provider, subject, user_id, email, linked_at, last_sign_in_at) \
         VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (provider, subject) DO UPDATE SET last_sign_in_at = excluded.last_sign_in_at \
         WHERE identities.user_id = excluded.user_id",
    )
    .bind(&identity.provider)
    .bind(&identity.subject)
    .bind(user_id)
    .bind(identity.email.as_deref())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The identities linked to `user_id`, oldest first.
pub(super) async fn list(db: &AnyPool, user_id: &str) -> Result<Vec<LinkedIdentity>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT provider, email, linked_at, last_sign_in_at FROM identities \
         WHERE user_id = $1 ORDER BY linked_at, provider, subject",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LinkedIdentity {
                provider: row.try_get(0)?,
                email: row.try_get(1)?,
                linked_at: millis(row.try_get(2)?),
                last_sign_in_at: millis(row.try_get(3)?),
            })
        })
        .collect()
}

/// Deletes `user_id`'s identities at `provider` unless the account would be left with no
/// way to sign in (no password, no identity at another provider). The account's row is
/// written first (to itself), which locks it until the commit: two unlinks of an account's
/// last two identities then run one after the other, and the second sees what the first
/// left, on PostgreSQL (row lock, and each statement reads the latest commits) as on SQLite
/// (one writer at a time). The only other writer that takes identities away
/// ([`drop_unproven`]) sets a password with it.
pub(super) async fn unlink(
    db: &AnyPool,
    user_id: &str,
    provider: &str,
) -> Result<Unlinked, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query(
        "DELETE FROM identities WHERE user_id = $1 AND provider = $2 AND (\
         EXISTS (SELECT 1 FROM users WHERE id = $1 AND password_hash <> '') \
         OR EXISTS (SELECT 1 FROM identities o WHERE o.user_id = $1 AND o.provider <> $2))",
    )
    .bind(user_id)
    .bind(provider)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let outcome = if deleted > 0 {
        Unlinked::Done
    } else if has_identity_at(&mut tx, user_id, provider).await? {
        Unlinked::LastWay
    } else {
        Unlinked::NotLinked
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Whether `user_id` has an identity at `provider`.
async fn has_identity_at(
    conn: &mut AnyConnection,
    user_id: &str,
    provider: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 FROM identities WHERE user_id = $1 AND provider = $2")
        .bind(user_id)
        .bind(provider)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// The pre-account-takeover guard (GoTrue's rule): deletes every identity linked to
/// `user_id` while its address is still unverified. Called in the transaction in which a
/// link mailed to that address verifies it, before the verification is written: whoever
/// signed in at a provider that asserted the address without verifying it must not keep
/// the account once the mailbox's owner claims it. Returns how many went.
pub(super) async fn drop_unproven(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM identities WHERE user_id = $1 \
         AND EXISTS (SELECT 1 FROM users WHERE id = $1 AND email_verified_at IS NULL)",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A stored Unix-ms time as the API shows it (never negative in practice).
fn millis(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}
