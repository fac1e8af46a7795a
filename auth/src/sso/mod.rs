//! Sign-in through an external provider: OpenID Connect ([`oidc`]: any issuer, Google,
//! Microsoft) and GitHub's OAuth 2 ([`github`]). A provider sign-in ends in exactly the
//! session a password sign-in makes (same record, cookie, fingerprint), so the gateway needs
//! nothing new.
//!
//! - [`config`]: `[identity]` and `[[identity.providers]]`.
//! - [`state`]: what a sign-in remembers between its redirect and its callback (state, nonce,
//!   PKCE verifier, `next`), in the shared store, bound to the browser by a cookie.
//! - [`flow`]: the two endpoints (`/auth/sso/<id>` and its callback) and the account a
//!   provider identity leads to: found by its link, created, or linked after the existing
//!   account's password ([`link`]).

/// `[identity]`, kept with the rest of the config ([`crate::config::identity`]).
pub use crate::config::identity as config;
pub mod flow;
pub mod github;
pub mod link;
pub mod oidc;
pub mod routes;
pub mod state;

/// Who the provider says signed in, after every check of the provider's own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUser {
    /// The stable subject: OIDC `sub`; Microsoft `tid`/`oid`; GitHub's numeric id.
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider says the address is verified (before `trust_email_verified`).
    pub email_verified: bool,
    /// Groups for `role_map` (the `roles_claim`; GitHub: organization logins).
    pub groups: Vec<String>,
    /// The provider says its sign-in used a second factor (`amr` with `mfa`, `otp`, `hwk` or
    /// `swk`); counted only with `trust_upstream_mfa`.
    pub upstream_mfa: bool,
}

/// Why a provider sign-in failed. Each ends on the sign-in page with its message, is logged
/// with its detail and counted under [`SsoError::reason`].
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The provider sent the person back with `error=` (they declined, or it refused).
    #[error("the provider answered {0}")]
    Provider(String),
    /// No matching state for this browser: missing, expired, used, or from another browser.
    #[error("sign-in state: {0}")]
    State(&'static str),
    /// The code exchange failed.
    #[error("code exchange: {0}")]
    Exchange(String),
    /// The ID token (or, for GitHub, the user) failed a check.
    #[error("identity check: {0}")]
    Token(String),
    /// The person is not let in by `allowed_domains`, `allowed_orgs` or `allowed_tenants`.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The provider could not be reached, or answered nonsense.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

impl SsoError {
    /// The metric's `result` label and the sign-in page's message code.
    pub fn reason(&self) -> &'static str {
        match self {
            SsoError::Provider(_) => "provider_error",
            SsoError::State(_) => "bad_state",
            SsoError::Exchange(_) => "exchange_failed",
            SsoError::Token(_) => "token_rejected",
            SsoError::NotAllowed(_) => "not_allowed",
            SsoError::Unavailable(_) => "provider_unavailable",
        }
    }
}

/// What `authflow check` says about the providers it can reach from here: a warning per
/// OpenID issuer whose discovery fails (an offline CI still checks the file; a wrong
/// issuer shows before the first person tries it).
pub async fn reachability(cfg: &config::IdentityConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in cfg
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_oidc())
    {
        if let Err(e) = oidc::Oidc::new(p, http_client()).metadata().await {
            out.push(format!(
                "identity.providers[{i}] ({}): issuer not reachable from here: {e}",
                p.id
            ));
        }
    }
    out
}

/// The HTTP client for providers: no redirects followed (a token or discovery endpoint that
/// redirects is refused, not followed somewhere else), bounded in time.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("AuthFlow/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}
