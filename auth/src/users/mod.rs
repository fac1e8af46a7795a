//! Where accounts live. One trait, two providers: [`builtin::BuiltinUsers`] (our own
//! database) and [`supabase::SupabaseUsers`] (Supabase Auth over HTTP). The HTTP layer and
//! the sessions do not care which one runs.

pub mod builtin;
mod identities;
pub mod roles;
pub mod supabase;

use async_trait::async_trait;
use authflow_shared::session::SessionRecord;

/// A successful sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    pub email: String,
    /// Provider data to keep with the session (already encrypted where secret).
    pub provider_data: Option<String>,
    /// The account's roles as of this sign-in, normalized
    /// ([`authflow_shared::roles::normalize`]); kept in the session's claims.
    pub roles: Vec<String>,
}

/// An account, as a password reset names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    pub email: String,
}

/// An identity at an external provider (`[[identity.providers]]`), as it signs in: the
/// provider's `id` and the stable subject it names the person by (OIDC `sub`, Microsoft
/// `tid`+`oid`, GitHub's numeric id; never an email).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub provider: String,
    pub subject: String,
    /// The address the provider gave, normalized ([`crate::credentials::normalize_email`]).
    pub email: Option<String>,
    /// Whether that address counts as verified (the provider said so and the provider's
    /// `trust_email_verified` allows it).
    pub email_verified: bool,
}

/// An identity linked to an account, as the account's owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkedIdentity {
    pub provider: String,
    /// The address the provider gave when it was linked (may be none).
    pub email: Option<String>,
    pub linked_at: u64,
    pub last_sign_in_at: u64,
}

/// The account that holds an address, as a provider sign-in must know it before it links or
/// creates anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailHolder {
    pub user_id: String,
    /// Whether the account has a password to prove it with (a provider-made account has none).
    pub has_password: bool,
    /// Whether the account's own address was ever verified.
    pub email_verified: bool,
}

/// What unlinking an identity did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    Done,
    /// The account has no such identity.
    NotLinked,
    /// It is the last way to sign in (no password, no other identity): kept.
    LastWay,
}

/// What can go wrong, in terms the API maps to fixed responses. None of these reveals
/// whether an account exists.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("email not verified")]
    EmailNotVerified,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("{field}: {reason}")]
    Validation { field: &'static str, reason: String },
    #[error("rate limited by the provider")]
    RateLimited,
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait UserProvider: Send + Sync {
    /// Creates the account (or, for an existing email, quietly tells its owner). Inputs are
    /// already validated; `lang` is the language of any mail it sends (a catalogue's).
    async fn sign_up(&self, email: &str, password: &str, lang: &str) -> Result<(), ProviderError>;
    /// Checks the credentials.
    async fn sign_in(&self, email: &str, password: &str) -> Result<SignedIn, ProviderError>;
    /// Called after a session is deleted at logout (revoke upstream tokens).
    async fn signed_out(&self, record: &SessionRecord);
    /// Sends a reset link (in `lang`) if the account exists; silent otherwise.
    async fn forgot_password(&self, email: &str, lang: &str) -> Result<(), ProviderError>;
    /// The account a reset token belongs to, without using the token up; `Ok(None)` when the
    /// provider cannot tell without using it (Supabase). Lets the caller end the account's
    /// sessions *before* the password changes, so a failure leaves the old state and a
    /// usable link.
    async fn reset_account(&self, token: &str) -> Result<Option<Account>, ProviderError>;
    /// Sets a new password with a reset token and uses the token up; returns the account
    /// whose sessions must go.
    async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<Account, ProviderError>;
    /// The account whose password following verification link `token` would set (the
    /// password chosen in the sign-up that sent it), without using the link up; `Ok(None)`
    /// when the link sets no password, is not valid, or the provider cannot tell. Lets the
    /// caller end the account's sessions *before* the password changes.
    async fn verification_account(&self, _token: &str) -> Result<Option<Account>, ProviderError> {
        Ok(None)
    }
    /// Confirms the address with verification link `token` and uses the link up;
    /// `Some(account)` when that also set the account's password, whose sessions must then
    /// go (someone else may have signed up first with this address and signed in).
    async fn verify_email(&self, token: &str) -> Result<Option<Account>, ProviderError>;
    /// Sets a new password for a signed-in user who has just proved the old one; `who` is
    /// what that proof returned (Supabase: a fresh GoTrue session to make the change with).
    /// Every open reset and verification link of the account stops working with it.
    async fn set_password(&self, who: &SignedIn, new_password: &str) -> Result<(), ProviderError>;
    /// The id of the account with `email` (for operators naming a user by address);
    /// `Ok(None)` when there is none or the provider cannot look it up.
    async fn user_id_of(&self, _email: &str) -> Result<Option<String>, ProviderError> {
        Ok(None)
    }
    /// Whether `account` (the SHA-256 of its normalized address, as the sign-in throttle
    /// keys it) signed in successfully from `address` within `within`; `Ok(false)` when the
    /// provider keeps no such history (then every address is new to the throttle).
    async fn familiar_address(
        &self,
        _account: &str,
        _address: &str,
        _within: std::time::Duration,
    ) -> Result<bool, ProviderError> {
        Ok(false)
    }
    /// Remembers a successful sign-in of `account` from `address`.
    async fn remember_address(&self, _account: &str, _address: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    /// Forgets every address `account` signed in from (after a password reset).
    async fn forget_addresses(&self, _account: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    /// The account `identity` (provider, subject) is linked to, as a sign-in: `Ok(None)` when
    /// none is, `Err(InvalidCredentials)` when that account is disabled. Records the time of
    /// this sign-in on the link.
    async fn identity_sign_in(
        &self,
        _identity: &ExternalIdentity,
    ) -> Result<Option<SignedIn>, ProviderError> {
        Err(no_identities(self.name()))
    }
    /// The account holding `email` (normalized), whatever its state; `Ok(None)` when none.
    async fn email_holder(&self, _email: &str) -> Result<Option<EmailHolder>, ProviderError> {
        Err(no_identities(self.name()))
    }
    /// Creates an account for `identity` (whose email no account holds, or which has none)
    /// with no password, its address verified iff `identity.email_verified`, and links the
    /// identity to it, in one transaction. `Err(Validation)` if the address was taken in the
    /// meantime (the caller then starts over).
    async fn create_from_identity(
        &self,
        _identity: &ExternalIdentity,
    ) -> Result<SignedIn, ProviderError> {
        Err(no_identities(self.name()))
    }
    /// Gives account `user_id`, whose address was never verified, to `identity`, whose
    /// provider verified that address: its password and open links go, the address counts
    /// as verified, the identity is linked (GoTrue's rule for unconfirmed sign-ups). The
    /// caller ends the account's sessions.
    async fn claim_unverified(
        &self,
        _user_id: &str,
        _identity: &ExternalIdentity,
    ) -> Result<SignedIn, ProviderError> {
        Err(no_identities(self.name()))
    }
    /// Links `identity` to account `user_id` (after its owner proved the account) and
    /// returns the account as a sign-in. An identity already linked to another account is
    /// `Err(Validation)`.
    async fn link_identity(
        &self,
        _user_id: &str,
        _identity: &ExternalIdentity,
    ) -> Result<SignedIn, ProviderError> {
        Err(no_identities(self.name()))
    }
    /// The identities linked to `user_id`, oldest first.
    async fn identities(&self, _user_id: &str) -> Result<Vec<LinkedIdentity>, ProviderError> {
        Ok(Vec::new())
    }
    /// Unlinks `user_id`'s identity at `provider`, unless it is the last way to sign in.
    async fn unlink_identity(
        &self,
        _user_id: &str,
        _provider: &str,
    ) -> Result<Unlinked, ProviderError> {
        Ok(Unlinked::NotLinked)
    }
    /// `Err` with a short reason when the user store cannot answer.
    async fn health(&self) -> Result<(), String>;
    /// A name for logs and `/health`.
    fn name(&self) -> &'static str;
}

/// The error of a provider that keeps no external identities (Supabase: GoTrue links its
/// own identities; AuthFlow's provider sign-in needs the built-in store).
fn no_identities(provider: &str) -> ProviderError {
    ProviderError::Unavailable(format!(
        "the {provider} user provider keeps no external identities"
    ))
}
