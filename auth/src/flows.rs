//! The account flows, each read top to bottom in one place: sign up, sign in, sign out,
//! forgot password, reset password, verify email. They take typed input and return typed
//! outcomes; whether a JSON client or an HTML form called them is the caller's business
//! ([`crate::api`] answers JSON, [`crate::forms`] turns the same outcome into a redirect).

use crate::credentials::{
    email_input, looks_like_email, plausible_sign_in, validate_email, validate_password,
};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::mail::{MailGate, MailKind};
use crate::metrics::{self, Revocation};
use crate::mfa::pending::PendingSignIn;
use crate::mfa::{Mfa, Required};
use crate::sessions::Sessions;
use crate::throttle::SignInThrottle;
use crate::users::UserProvider;
use authflow_shared::session::{Claims, SessionRecord};
use authflow_shared::token::{log_id, SessionToken};
use std::sync::Arc;

pub struct Accounts {
    pub users: Arc<dyn UserProvider>,
    pub sessions: Sessions,
    pub throttle: SignInThrottle,
    mail_gate: MailGate,
    /// Second factors; `None` when `[mfa] required = "never"`.
    pub mfa: Option<Mfa>,
}

/// How a provider sign-in was made.
#[derive(Debug, Clone, Copy)]
pub struct Federated<'a> {
    /// The provider's id.
    pub idp: &'a str,
    /// The account's password was given too (linking).
    pub with_password: bool,
    /// The provider says it asked for a second factor, and is trusted to
    /// (`trust_upstream_mfa`).
    pub upstream_mfa: bool,
}

/// What a sign-in whose first factor was right ends in.
pub enum Outcome {
    /// A session.
    Session(SessionToken, SessionRecord),
    /// No session yet: the account's second factor (or, under `required = "always"`, its
    /// enrolment) comes first.
    SecondFactor(PendingSignIn),
}

impl Accounts {
    pub fn new(
        users: Arc<dyn UserProvider>,
        sessions: Sessions,
        throttle: SignInThrottle,
        mail_gate: MailGate,
        mfa: Option<Mfa>,
    ) -> Self {
        Accounts {
            users,
            sessions,
            throttle,
            mail_gate,
            mfa,
        }
    }

    /// The second factor the account of `who` must give before a session, if any: a
    /// pending sign-in remembering how the first factor was proved (`amr`, `idp`).
    pub async fn second_factor_due(
        &self,
        req: &ApiRequest,
        who: &crate::users::SignedIn,
        began_us: u64,
        amr: &str,
        idp: Option<&str>,
    ) -> Result<Option<PendingSignIn>, ApiError> {
        let Some(mfa) = &self.mfa else {
            return Ok(None);
        };
        let enrolled = mfa.enrolled(&who.user_id).await?;
        let must_enrol = !enrolled.any() && mfa.required == Required::Always;
        if !enrolled.any() && !must_enrol {
            return Ok(None);
        }
        Ok(Some(PendingSignIn {
            user_id: who.user_id.clone(),
            email: who.email.clone(),
            roles: who.roles.clone(),
            provider_data: who.provider_data.clone(),
            amr: vec![amr.to_owned()],
            idp: idp.map(str::to_owned),
            began_us,
            fingerprint: self.sessions.fingerprint_of(req),
            next: None,
            must_enrol,
            expires_ms: authflow_shared::now_ms() + crate::mfa::pending::TTL.as_millis() as u64,
        }))
    }

    /// Creates an account (or quietly mails the owner of an existing address: the answer is
    /// the same either way; the provider keeps those mails within their cooldown).
    /// Its mail is in `lang`, the language the request was answered in.
    pub async fn sign_up(&self, email: &str, password: &str, lang: &str) -> Result<(), ApiError> {
        let email = validate_email(email)?;
        validate_password(password)?;
        Ok(self.users.sign_up(&email, password, lang).await?)
    }

    /// Checks the credentials under the throttle, revokes any session the request presented
    /// (no fixation: it is never adopted) and starts a new one bound to this device; unless
    /// the presented session is the same account's, put aside by the gateway for another
    /// device (`on_fingerprint_mismatch = "reauth"`): that one is re-bound to this device.
    pub async fn sign_in(
        &self,
        req: &ApiRequest,
        email: &str,
        password: &str,
    ) -> Result<Outcome, ApiError> {
        let email = email_input(email)?;
        if !plausible_sign_in(&email, password) {
            return Err(ApiError::InvalidCredentials);
        }
        let (who, began) = self
            .throttle
            .guard(
                &email,
                self.sessions.client_ip(req),
                self.users.sign_in(&email, password),
            )
            .await?;
        if let Some(pending) = self
            .second_factor_due(req, &who, began, "pwd", None)
            .await?
        {
            tracing::info!(user = %who.user_id, "password right; waiting for the second factor");
            return Ok(Outcome::SecondFactor(pending));
        }
        if let Some((token, record)) = self.sessions.rebind_presented(req, &who).await? {
            metrics::rebound();
            tracing::info!(user = %record.user_id, session = log_id(&token.id()), "signed in again: session re-bound to this device");
            return Ok(Outcome::Session(token, record));
        }
        let replaced = self.sessions.revoke_presented(req).await?;
        metrics::revoked(Revocation::Replaced, replaced.len());
        let (token, record) = self.sessions.start(req, who, began).await?;
        tracing::info!(user = %record.user_id, session = log_id(&token.id()), "signed in");
        self.sessions.align_roles(&record).await;
        Ok(Outcome::Session(token, record))
    }

    /// Finishes a sign-in that waited for its second factor, proved as `proof`: the session
    /// it would have had, with the factor in `amr` and `mfa_time`. Created with the time the
    /// first factor was checked, so a reset or a revoke-all since then refuses it.
    pub async fn finish_second_factor(
        &self,
        req: &ApiRequest,
        pending: &PendingSignIn,
        proof: crate::mfa::Proof,
    ) -> Result<(SessionToken, SessionRecord), ApiError> {
        let replaced = self.sessions.revoke_presented(req).await?;
        metrics::revoked(Revocation::Replaced, replaced.len());
        let (token, record) = self
            .sessions
            .start_as(req, pending.signed_in(), pending.began_us, |now, roles| {
                let mut amr = pending.amr.clone();
                amr.push(proof.amr().to_owned());
                Claims {
                    amr,
                    auth_time: Some(now),
                    idp: pending.idp.clone(),
                    roles,
                    mfa_time: Some(now),
                }
            })
            .await?;
        tracing::info!(user = %record.user_id, session = log_id(&token.id()), method = proof.as_str(), "signed in with a second factor");
        self.sessions.align_roles(&record).await;
        Ok((token, record))
    }

    /// Starts the session of a provider sign-in: as a password sign-in does (any presented
    /// session revoked, bound to this device, the per-user cap), with `amr` `fed` (and `pwd`
    /// when the account's password was given too) and the provider in `idp`. The account's
    /// second factor comes first, unless the provider is trusted to have asked for one and
    /// says it did (`trust_upstream_mfa`): then the session counts it (`mfa`, `mfa_time`).
    pub async fn sign_in_federated(
        &self,
        req: &ApiRequest,
        who: crate::users::SignedIn,
        how: Federated<'_>,
    ) -> Result<Outcome, ApiError> {
        let Federated {
            idp,
            with_password,
            upstream_mfa,
        } = how;
        let began = authflow_shared::now_us();
        let first = if with_password { "pwd" } else { "fed" };
        if !upstream_mfa {
            if let Some(mut pending) = self
                .second_factor_due(req, &who, began, first, Some(idp))
                .await?
            {
                if with_password {
                    pending.amr = vec!["pwd".into(), "fed".into()];
                }
                return Ok(Outcome::SecondFactor(pending));
            }
        }
        let replaced = self.sessions.revoke_presented(req).await?;
        metrics::revoked(Revocation::Replaced, replaced.len());
        let (token, record) = self
            .sessions
            .start_as(req, who, began, |now, roles| {
                let mut c = Claims::federated(now, idp, with_password, roles);
                if upstream_mfa {
                    c.amr.push("mfa".into());
                    c.mfa_time = Some(now);
                }
                c
            })
            .await?;
        tracing::info!(user = %record.user_id, session = log_id(&token.id()), provider = idp, "signed in");
        self.sessions.align_roles(&record).await;
        Ok(Outcome::Session(token, record))
    }

    /// Links the identity `pending` waits with to its account, once the account's password
    /// is given (checked like a sign-in: throttled, same timing), and signs in.
    pub async fn link_with_password(
        &self,
        req: &ApiRequest,
        pending: &crate::sso::link::PendingLink,
        password: &str,
    ) -> Result<Outcome, ApiError> {
        if !plausible_sign_in(&pending.email, password) {
            return Err(ApiError::InvalidCredentials);
        }
        let (who, _) = self
            .throttle
            .guard(
                &pending.email,
                self.sessions.client_ip(req),
                self.users.sign_in(&pending.email, password),
            )
            .await?;
        if who.user_id != pending.user_id {
            return Err(ApiError::InvalidCredentials);
        }
        let mut who = self
            .users
            .link_identity(&pending.user_id, &pending.identity())
            .await?;
        who.roles.extend(pending.provider_roles.iter().cloned());
        who.roles.sort_unstable();
        who.roles.dedup();
        let how = Federated {
            idp: &pending.provider,
            with_password: true,
            upstream_mfa: false,
        };
        self.sign_in_federated(req, who, how).await
    }

    /// Checks that `password` is the password of `user_id` (whose address is `email`), under
    /// the sign-in throttle, as a change to the account's factors needs.
    pub async fn check_password(
        &self,
        req: &ApiRequest,
        email: &str,
        user_id: &str,
        password: &str,
    ) -> Result<(), ApiError> {
        if !plausible_sign_in(email, password) {
            return Err(ApiError::InvalidCredentials);
        }
        let (who, _) = self
            .throttle
            .guard(
                email,
                self.sessions.client_ip(req),
                self.users.sign_in(email, password),
            )
            .await?;
        if who.user_id != user_id {
            return Err(ApiError::InvalidCredentials);
        }
        Ok(())
    }

    /// Changes the password of the request's own session's user, who must give the old one
    /// (checked like a sign-in: throttled, same timing). Every other session ends, before
    /// the change (so a failure leaves nothing half done) and again after it, with the
    /// store's revoke mark: a sign-in that checked the old password in between is either
    /// ended by the second sweep or refused when it tries to create its session. Returns
    /// how many ended.
    pub async fn change_password(
        &self,
        req: &ApiRequest,
        old_password: &str,
        new_password: &str,
    ) -> Result<usize, ApiError> {
        let (id, record) = self.sessions.current(req).await?;
        validate_password(new_password)?;
        let email = record.email.clone().ok_or(ApiError::InvalidCredentials)?;
        let (who, _) = self
            .throttle
            .guard(
                &email,
                self.sessions.client_ip(req),
                self.users.sign_in(&email, old_password),
            )
            .await?;
        if who.user_id != record.user_id {
            return Err(ApiError::InvalidCredentials);
        }
        let user = record.user_id.as_str();
        let before = self.sessions.end_others(user, &id).await?;
        self.users.set_password(&who, new_password).await?;
        let after = self.sessions.end_others(user, &id).await?;
        metrics::revoked(Revocation::PasswordChange, before + after);
        tracing::info!(user = %user, revoked = before + after, "password changed; other sessions ended");
        Ok(before + after)
    }

    /// Ends every session the request presents, on the server, and tells the provider.
    pub async fn sign_out(&self, req: &ApiRequest) -> Result<(), ApiError> {
        let ended = self.sessions.revoke_presented(req).await?;
        metrics::revoked(Revocation::SignOut, ended.len());
        for record in ended {
            self.users.signed_out(&record).await;
            tracing::info!(user = %record.user_id, "signed out");
        }
        Ok(())
    }

    /// Starts a reset for `email`. The lookup and the email happen after the caller has
    /// answered, so existing and unknown addresses answer alike, in the same time; at most
    /// one reset mail per address per cooldown. The mail is in `lang`.
    pub async fn forgot_password(&self, email: &str, lang: &str) -> Result<(), ApiError> {
        let email = email_input(email)?;
        if !looks_like_email(&email) {
            return Ok(());
        }
        if !self.mail_gate.allow(MailKind::Reset, &email, "").await? {
            metrics::mail("skipped");
            tracing::info!("reset mail skipped: address in its cooldown");
            return Ok(());
        }
        metrics::reset_requested();
        let users = self.users.clone();
        let lang = lang.to_owned();
        tokio::spawn(async move {
            if let Err(e) = users.forgot_password(&email, &lang).await {
                tracing::error!(error = %e, "forgot-password failed");
            }
        });
        Ok(())
    }

    /// Sets a new password with a reset token and ends every session of the account, in an
    /// order that holds whatever fails: the sessions are revoked *before* the password
    /// changes (a Redis outage then answers 503 and leaves the old state and a usable link),
    /// and again after (a sign-in that checked the old password in between is refused by the
    /// store's revoke mark, see [`Sessions::start`]). The throttle then starts afresh for
    /// the account and for the address the reset came from, which is also what lifts a
    /// hard cap.
    pub async fn reset_password(
        &self,
        req: &ApiRequest,
        token: &str,
        new_password: &str,
    ) -> Result<(), ApiError> {
        validate_password(new_password)?;
        if token.is_empty() || token.len() > 512 {
            return Err(ApiError::InvalidToken);
        }
        match self.users.reset_account(token).await? {
            Some(account) => {
                let revoked = self.sessions.revoke_user(&account.user_id).await?;
                metrics::revoked(Revocation::PasswordReset, revoked);
            }
            // The provider cannot look without using the token: at least know that the
            // sessions can be revoked before it is used.
            None => self.sessions.store.ping().await?,
        }
        let account = self.users.reset_password(token, new_password).await?;
        self.revoke_again(&account.user_id, Revocation::PasswordReset)
            .await;
        if let Err(e) = self
            .throttle
            .reset(&account.email, self.sessions.client_ip(req))
            .await
        {
            tracing::warn!(error = %e, "password reset: throttle not cleared");
        }
        Ok(())
    }

    /// Confirms an address with the token from the verification link. When the link also
    /// sets the password (the one chosen in the sign-up that sent it, which replaces any
    /// earlier sign-up's), every session of the account ends, as for a reset and in the
    /// same order (ASVS 5.0 7.4.3): before the change, so that a Redis outage answers 503
    /// and leaves the link usable, and again after it. Without this, someone who signed up
    /// first with the owner's address (and signed in, where verification is not required)
    /// would keep their session after the owner took the account back.
    pub async fn verify_email(&self, token: Option<&str>) -> Result<(), ApiError> {
        let token = token
            .filter(|t| !t.is_empty() && t.len() <= 512)
            .ok_or(ApiError::InvalidToken)?;
        if let Some(account) = self.users.verification_account(token).await? {
            let revoked = self.sessions.revoke_user(&account.user_id).await?;
            metrics::revoked(Revocation::EmailVerified, revoked);
        }
        let Some(account) = self.users.verify_email(token).await? else {
            return Ok(());
        };
        self.revoke_again(&account.user_id, Revocation::EmailVerified)
            .await;
        Ok(())
    }

    /// The second revoke of a password change made by a link (reset, verification), after
    /// the change: it ends a session that a sign-in with the old password started between
    /// the first revoke and the change. Its failure is logged, not answered: every session
    /// older than the first revoke is gone already.
    async fn revoke_again(&self, user_id: &str, cause: Revocation) {
        match self.sessions.revoke_user(user_id).await {
            Ok(revoked) => {
                metrics::revoked(cause, revoked);
                tracing::info!(user = %user_id, revoked, cause = cause.as_str(), "password set by a link; all sessions revoked")
            }
            Err(e) => {
                tracing::error!(user = %user_id, error = %e, cause = cause.as_str(), "second revoke failed")
            }
        }
    }
}
