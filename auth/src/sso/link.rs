//! Which account a provider identity leads to, and the one way an identity joins an
//! existing account: by that account's password.
//!
//! Linking by email alone is an account takeover (Ory Kratos refused it, PR #3574): whoever
//! controls a provider that asserts the address would get the account. So:
//! - an identity already linked signs in to its account;
//! - else, an address no account holds gets a new account (when `create_accounts`);
//! - else, the existing account is linked only when the provider asserted a *verified*
//!   address and the person gives the account's password on the "link your account" page;
//!   an unverified address never links and never makes a second account with that address;
//! - an account whose own address nobody ever verified (a sign-up never confirmed) is no
//!   account to protect: a provider that verified the address takes it over (its password
//!   and sessions end), so nobody can block someone's provider sign-in by signing up first.

use super::config::ProviderConfig;
use super::ProviderUser;
use crate::credentials::normalize_email;
use crate::error::ApiError;
use crate::users::roles::RoleMapping;
use crate::users::{EmailHolder, ExternalIdentity, ProviderError, SignedIn, UserProvider};
use authflow_shared::store::{ShortLived, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long the "link your account" page waits for the password.
pub const LINK_TTL: Duration = Duration::from_secs(600);

/// The cookie naming a link waiting for its password.
pub const LINK_COOKIE: &str = authflow_shared::cookie::LINK_COOKIE;

/// Where a provider sign-in lands.
#[derive(Debug)]
pub enum Landing {
    /// Signed in to this account (found by its link, or just created).
    Account(SignedIn),
    /// An account holds the (verified) address: its password must link them.
    LinkRequired(PendingLink),
    /// An account whose address nobody ever verified held it; the provider verified it, so
    /// the account is now the identity's: its sessions must end before this one starts.
    Claimed(SignedIn),
    /// Refused, with the sign-in page's message code (`sso_...`).
    Refused(&'static str),
}

/// A link waiting for the existing account's password, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingLink {
    pub user_id: String,
    /// The account's address (the provider's verified one, the same once normalized).
    pub email: String,
    pub provider: String,
    pub subject: String,
    /// Roles the provider's groups map to.
    pub provider_roles: Vec<String>,
    pub next: String,
}

impl PendingLink {
    pub fn identity(&self) -> ExternalIdentity {
        ExternalIdentity {
            provider: self.provider.clone(),
            subject: self.subject.clone(),
            email: Some(self.email.clone()),
            email_verified: true,
        }
    }
}

/// The identity `user` is, as the provider's config lets it count.
pub fn identity_of(cfg: &ProviderConfig, user: &ProviderUser) -> ExternalIdentity {
    ExternalIdentity {
        provider: cfg.id.clone(),
        subject: user.subject.clone(),
        email: user.email.as_deref().map(normalize_email),
        email_verified: user.email_verified && cfg.trust_email_verified,
    }
}

/// Finds or creates the account for `user`, or says what must happen first.
pub async fn resolve(
    users: &dyn UserProvider,
    cfg: &ProviderConfig,
    user: &ProviderUser,
    next: &str,
) -> Result<Landing, ApiError> {
    let identity = identity_of(cfg, user);
    if let Some(who) = users.identity_sign_in(&identity).await? {
        return Ok(Landing::Account(who));
    }
    let Some(email) = identity.email.clone() else {
        return Ok(Landing::Refused("sso_no_email"));
    };
    match users.email_holder(&email).await? {
        None if !cfg.create_accounts => Ok(Landing::Refused("sso_no_account")),
        None => match users.create_from_identity(&identity).await {
            Ok(who) => Ok(Landing::Account(who)),
            // Someone took the address in between: as if it had been taken before.
            Err(ProviderError::Validation { field: "email", .. }) => {
                Ok(Landing::Refused("sso_email_unverified"))
            }
            Err(e) => Err(e.into()),
        },
        Some(holder) if !holder.email_verified && identity.email_verified => {
            match users.claim_unverified(&holder.user_id, &identity).await {
                Ok(who) => Ok(Landing::Claimed(who)),
                Err(ProviderError::Validation { .. }) => {
                    Ok(Landing::Refused("sso_email_unverified"))
                }
                Err(e) => Err(e.into()),
            }
        }
        Some(holder) => Ok(existing(holder, &identity, cfg, user, next)),
    }
}

/// An account already holds the identity's address.
fn existing(
    holder: EmailHolder,
    identity: &ExternalIdentity,
    cfg: &ProviderConfig,
    user: &ProviderUser,
    next: &str,
) -> Landing {
    if !identity.email_verified {
        return Landing::Refused("sso_email_unverified");
    }
    if !holder.has_password {
        return Landing::Refused("sso_link_other_way");
    }
    Landing::LinkRequired(PendingLink {
        user_id: holder.user_id,
        email: identity.email.clone().unwrap_or_default(),
        provider: cfg.id.clone(),
        subject: identity.subject.clone(),
        provider_roles: RoleMapping::of(cfg).map(&user.groups),
        next: next.to_owned(),
    })
}

/// The kind of its record ([`crate::once`]).
const KIND: &str = "link";

/// Stores `pending` and returns the secret for its cookie.
pub async fn remember(store: &dyn ShortLived, pending: &PendingLink) -> Result<String, StoreError> {
    crate::once::remember(store, KIND, pending, LINK_TTL).await
}

/// Takes the link the cookie's `secret` names (once).
pub async fn take(store: &dyn ShortLived, secret: &str) -> Result<Option<PendingLink>, StoreError> {
    crate::once::take(store, KIND, secret).await
}

/// Puts a link back after a wrong password, so the person can try again (the sign-in
/// throttle counts the guesses).
pub async fn put_back(
    store: &dyn ShortLived,
    secret: &str,
    pending: &PendingLink,
) -> Result<(), StoreError> {
    crate::once::put(store, KIND, secret, pending, LINK_TTL).await
}
