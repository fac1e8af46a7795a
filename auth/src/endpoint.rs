//! Every URL the auth service answers, named once. The router, the form redirects, the pages'
//! `<form action>`s and the links in emails all take their paths from here, so a path changes
//! in one place.

use http::Method;

/// The JSON API lives under this prefix (the gateway routes it to this service).
pub const API_PREFIX: &str = "/api/v1/simple_auth";
/// The HTML pages live under this prefix.
pub const PAGE_PREFIX: &str = "/auth";

/// An API endpoint: one path, one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The process serves (for restarts): answers without asking any dependency.
    Livez,
    /// It can do its job: Redis and the user store answer (`/health` is the older name).
    Readyz,
    Health,
    SignUp,
    SignIn,
    Logout,
    ForgotPassword,
    ResetPassword,
    VerifyEmail,
    /// The signed-in user's sessions (`GET`).
    Sessions,
    /// Signs out one of them, named by its handle.
    SessionRevoke,
    /// Signs out every other session.
    SessionRevokeOthers,
    /// Signs out everywhere, this session included.
    SessionRevokeAll,
    /// A signed-in user changes their password (the old one required).
    ChangePassword,
    /// The configured external providers, for single-page apps (`GET`).
    Providers,
    /// Links a provider identity waiting on the "link your account" page, with the existing
    /// account's password.
    SsoLink,
    /// The signed-in user's linked provider identities (`GET`).
    Identities,
    /// Unlinks one of them (`{"provider": id}`).
    IdentityUnlink,
    /// The signed-in person's second factors (`GET`).
    Mfa,
    /// Finishes a sign-in waiting for its second factor, or steps a session up.
    MfaVerify,
    /// Starts a TOTP enrolment (secret, URI, QR code).
    TotpEnroll,
    /// Confirms it with a code; answers the recovery codes, once.
    TotpConfirm,
    /// Removes the authenticator and the recovery codes (password and a code).
    TotpDisable,
    /// A new set of recovery codes (password and a code).
    RecoveryRegenerate,
    /// The signed-in person's passkeys (`GET`): name, created, last used.
    PasskeyList,
    /// Begins registering a passkey (signed in): the options for `credentials.create`.
    PasskeyRegisterStart,
    /// Finishes it with the authenticator's answer and a name.
    PasskeyRegisterFinish,
    /// Removes one passkey (`{"id"}`; a second factor proved in the last minutes).
    PasskeyDelete,
    /// Begins a passkey authentication: a pending sign-in's second factor, a session's
    /// step-up, or (`passwordless`) a sign-in by the passkey alone.
    PasskeyAuthStart,
    /// Finishes it with the authenticator's answer.
    PasskeyAuthFinish,
}

impl Endpoint {
    pub const ALL: [Endpoint; 30] = [
        Endpoint::Livez,
        Endpoint::Readyz,
        Endpoint::Health,
        Endpoint::SignUp,
        Endpoint::SignIn,
        Endpoint::Logout,
        Endpoint::ForgotPassword,
        Endpoint::ResetPassword,
        Endpoint::VerifyEmail,
        Endpoint::Sessions,
        Endpoint::SessionRevoke,
        Endpoint::SessionRevokeOthers,
        Endpoint::SessionRevokeAll,
        Endpoint::ChangePassword,
        Endpoint::Providers,
        Endpoint::SsoLink,
        Endpoint::Identities,
        Endpoint::IdentityUnlink,
        Endpoint::Mfa,
        Endpoint::MfaVerify,
        Endpoint::TotpEnroll,
        Endpoint::TotpConfirm,
        Endpoint::TotpDisable,
        Endpoint::RecoveryRegenerate,
        Endpoint::PasskeyList,
        Endpoint::PasskeyRegisterStart,
        Endpoint::PasskeyRegisterFinish,
        Endpoint::PasskeyDelete,
        Endpoint::PasskeyAuthStart,
        Endpoint::PasskeyAuthFinish,
    ];

    /// Probes live at the root, for orchestrators.
    fn is_probe(self) -> bool {
        matches!(self, Endpoint::Livez | Endpoint::Readyz | Endpoint::Health)
    }

    /// The path below [`API_PREFIX`] (probes are at the root).
    fn suffix(self) -> &'static str {
        match self {
            Endpoint::Livez => "/livez",
            Endpoint::Readyz => "/readyz",
            Endpoint::Health => "/health",
            Endpoint::SignUp => "/signup",
            Endpoint::SignIn => "/signin",
            Endpoint::Logout => "/logout",
            Endpoint::ForgotPassword => "/forgot-password",
            Endpoint::ResetPassword => "/reset-password/update",
            Endpoint::VerifyEmail => "/verify-email",
            Endpoint::Sessions => "/sessions",
            Endpoint::SessionRevoke => "/sessions/revoke",
            Endpoint::SessionRevokeOthers => "/sessions/revoke-others",
            Endpoint::SessionRevokeAll => "/sessions/revoke-all",
            Endpoint::ChangePassword => "/change-password",
            Endpoint::Providers => "/providers",
            Endpoint::SsoLink => "/sso/link",
            Endpoint::Identities => "/identities",
            Endpoint::IdentityUnlink => "/identities/unlink",
            Endpoint::Mfa => "/mfa",
            Endpoint::MfaVerify => "/mfa/verify",
            Endpoint::TotpEnroll => "/mfa/totp/enroll",
            Endpoint::TotpConfirm => "/mfa/totp/confirm",
            Endpoint::TotpDisable => "/mfa/totp/disable",
            Endpoint::RecoveryRegenerate => "/mfa/recovery/regenerate",
            Endpoint::PasskeyList => "/mfa/webauthn",
            Endpoint::PasskeyRegisterStart => "/mfa/webauthn/register/start",
            Endpoint::PasskeyRegisterFinish => "/mfa/webauthn/register/finish",
            Endpoint::PasskeyDelete => "/mfa/webauthn/delete",
            Endpoint::PasskeyAuthStart => "/mfa/webauthn/authenticate/start",
            Endpoint::PasskeyAuthFinish => "/mfa/webauthn/authenticate/finish",
        }
    }

    /// The full request path.
    pub fn path(self) -> String {
        if self.is_probe() {
            self.suffix().to_owned()
        } else {
            format!("{API_PREFIX}{}", self.suffix())
        }
    }

    /// The one method the endpoint accepts.
    pub fn method(self) -> Method {
        match self {
            Endpoint::Livez
            | Endpoint::Readyz
            | Endpoint::Health
            | Endpoint::VerifyEmail
            | Endpoint::Sessions
            | Endpoint::Providers
            | Endpoint::Identities
            | Endpoint::Mfa
            | Endpoint::PasskeyList => Method::GET,
            _ => Method::POST,
        }
    }

    /// Whether it takes or sets a password: refused when `[identity] password = false`.
    pub fn uses_password(self) -> bool {
        matches!(
            self,
            Endpoint::SignUp
                | Endpoint::SignIn
                | Endpoint::ForgotPassword
                | Endpoint::ResetPassword
                | Endpoint::ChangePassword
        )
    }

    /// The `Allow` header value for a 405 on this endpoint.
    pub fn allow(self) -> &'static str {
        if self.method() == Method::GET {
            "GET"
        } else {
            "POST"
        }
    }

    /// The endpoint at `path`, whatever the method.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        if let Some(probe) = Endpoint::ALL
            .into_iter()
            .find(|e| e.is_probe() && e.suffix() == path)
        {
            return Some(probe);
        }
        let rest = path.strip_prefix(API_PREFIX)?;
        Endpoint::ALL
            .into_iter()
            .find(|e| !e.is_probe() && e.suffix() == rest)
    }
}

/// An HTML page a person sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    SignIn,
    SignUp,
    CheckEmail,
    ForgotPassword,
    ResetPassword,
    Verified,
    SignedOut,
    /// "Your devices": the signed-in user's sessions (rendered with the session, by the API).
    Devices,
    /// "Link your account": a provider sign-in met an existing account with its address; its
    /// password links them.
    Link,
    /// "Enter your code": a sign-in waiting for its second factor, or a step-up.
    MfaPrompt,
    /// "Set up an authenticator": the QR code and the confirm form (needs a session or a
    /// sign-in that must enrol; rendered by the API).
    MfaSetup,
}

impl Page {
    pub const ALL: [Page; 11] = [
        Page::SignIn,
        Page::SignUp,
        Page::CheckEmail,
        Page::ForgotPassword,
        Page::ResetPassword,
        Page::Verified,
        Page::SignedOut,
        Page::Devices,
        Page::Link,
        Page::MfaPrompt,
        Page::MfaSetup,
    ];

    fn slug(self) -> &'static str {
        match self {
            Page::SignIn => "signin",
            Page::SignUp => "signup",
            Page::CheckEmail => "check-email",
            Page::ForgotPassword => "forgot-password",
            Page::ResetPassword => "reset-password",
            Page::Verified => "verified",
            Page::SignedOut => "signed-out",
            Page::Devices => "sessions",
            Page::Link => "link",
            Page::MfaPrompt => "mfa",
            Page::MfaSetup => "mfa/setup",
        }
    }

    pub fn path(self) -> String {
        format!("{PAGE_PREFIX}/{}", self.slug())
    }

    /// The page at `path`; `None` when it is not a page path.
    pub fn from_path(path: &str) -> Option<Page> {
        let slug = path.strip_prefix(PAGE_PREFIX)?.strip_prefix('/')?;
        Page::ALL.into_iter().find(|p| p.slug() == slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_path(&e.path()), Some(e));
        }
        for p in Page::ALL {
            assert_eq!(Page::from_path(&p.path()), Some(p));
        }
        assert_eq!(
            Endpoint::ResetPassword.path(),
            "/api/v1/simple_auth/reset-password/update"
        );
        assert_eq!(Endpoint::from_path("/api/v1/simple_auth/health"), None);
        assert_eq!(Page::from_path("/authx/signin"), None);
    }
}
