//! Records a flow keeps for a few minutes and uses once (a provider sign-in waiting for its
//! account link, a sign-in waiting for its second factor), in the shared store so that any
//! auth instance can finish what another began. Each is named by a random secret that only
//! the browser's cookie holds and stored under `<kind>:<SHA-256 of the secret>`, so the
//! store holds nothing a cookie could be made from.

use authflow_shared::digest::hash_hex;
use authflow_shared::store::{ShortLived, StoreError};
use authflow_shared::token::random_token;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

fn key(kind: &str, secret: &str) -> String {
    format!("{kind}:{}", hash_hex(secret.as_bytes()))
}

/// Stores `value` for `ttl` under a new secret, and returns the secret for the cookie.
pub async fn remember<T: Serialize>(
    store: &dyn ShortLived,
    kind: &str,
    value: &T,
    ttl: Duration,
) -> Result<String, StoreError> {
    let secret = random_token(32);
    put(store, kind, &secret, value, ttl).await?;
    Ok(secret)
}

/// Stores `value` for `ttl` under `secret` (again, after a wrong password or code: the
/// caller's throttle counts the guesses).
pub async fn put<T: Serialize>(
    store: &dyn ShortLived,
    kind: &str,
    secret: &str,
    value: &T,
    ttl: Duration,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.put_new(&key(kind, secret), &text, ttl).await?;
    Ok(())
}

/// Takes (once) the record `secret` names; `None` when there is none, or the secret cannot
/// be one of ours.
pub async fn take<T: DeserializeOwned>(
    store: &dyn ShortLived,
    kind: &str,
    secret: &str,
) -> Result<Option<T>, StoreError> {
    if secret.is_empty() || secret.len() > 128 {
        return Ok(None);
    }
    Ok(store
        .take(&key(kind, secret))
        .await?
        .and_then(|v| serde_json::from_str(&v).ok()))
}
