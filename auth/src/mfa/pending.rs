//! A sign-in whose password (or provider) was right, waiting for its second factor: no
//! session yet, only this record in the shared store (five minutes, single use) under the
//! hash of a secret in an `HttpOnly` cookie, bound to the device fingerprint of the request
//! that began it. The session it becomes is created with the time the sign-in began, so a
//! password reset or a revoke-all in between voids it (the store's revoke mark).

use crate::users::SignedIn;
use authflow_shared::store::{ShortLived, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long the code prompt waits.
pub const TTL: Duration = Duration::from_secs(300);
/// The cookie naming a pending sign-in.
pub const COOKIE: &str = authflow_shared::cookie::MFA_COOKIE;

/// A sign-in waiting for its second factor, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingSignIn {
    pub user_id: String,
    pub email: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub provider_data: Option<String>,
    /// How the first factor was proved: `["pwd"]`, or `["fed"]` with `idp`.
    pub amr: Vec<String>,
    pub idp: Option<String>,
    /// When the first factor was checked (µs, the store's clock where known).
    pub began_us: u64,
    /// The device fingerprint of the request that began it.
    pub fingerprint: String,
    /// Where to go afterwards (a local path), when the sign-in came with one.
    pub next: Option<String>,
    /// `[mfa] required = "always"` and no factor yet: the person must enrol first.
    #[serde(default)]
    pub must_enrol: bool,
    /// Unix ms after which it is gone, wrong codes or not.
    pub expires_ms: u64,
}

impl PendingSignIn {
    pub fn signed_in(&self) -> SignedIn {
        SignedIn {
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            provider_data: self.provider_data.clone(),
            roles: self.roles.clone(),
        }
    }
}

/// The kind of its record ([`crate::once`]).
const KIND: &str = "mfa";

/// Stores `p` and returns the secret for its cookie.
pub async fn remember(store: &dyn ShortLived, p: &PendingSignIn) -> Result<String, StoreError> {
    crate::once::remember(store, KIND, p, left(p)).await
}

/// Takes the pending sign-in the cookie's `secret` names (once).
pub async fn take(
    store: &dyn ShortLived,
    secret: &str,
) -> Result<Option<PendingSignIn>, StoreError> {
    crate::once::take(store, KIND, secret).await
}

/// Stores `p` under `secret` until its end (again, after a wrong code: the throttle counts
/// the guesses, and a put back never extends its life).
pub async fn put(
    store: &dyn ShortLived,
    secret: &str,
    p: &PendingSignIn,
) -> Result<(), StoreError> {
    let left = left(p);
    if left.is_zero() {
        return Ok(());
    }
    crate::once::put(store, KIND, secret, p, left).await
}

/// What is left of `p`'s life.
fn left(p: &PendingSignIn) -> Duration {
    Duration::from_millis(p.expires_ms.saturating_sub(authflow_shared::now_ms()))
}
