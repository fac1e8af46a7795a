//! The second factor's endpoints and pages, on the [`Api`]:
//! - `GET mfa`: what the signed-in person has enrolled;
//! - `POST mfa/totp/enroll` and `/confirm` (signed in, or a sign-in that must enrol first):
//!   the secret and QR code, then the recovery codes, shown once;
//! - `POST mfa/verify {code | recovery_code}`: with the pending cookie, finishes a sign-in;
//!   with a session, steps it up (a fresh `mfa_time`);
//! - `POST mfa/totp/disable` and `mfa/recovery/regenerate` (password and a code);
//! - `GET /auth/mfa/setup`: the enrolment page.

use super::pending::{self, PendingSignIn, COOKIE};
use super::{Code, Mfa, Proof};
use crate::api::Api;
use crate::endpoint::{Endpoint, Page};
use crate::error::ApiError;
use crate::http::{json_response, see_other, set_cookie, ApiRequest, HttpResponse};
use crate::metrics::{self, Revocation};
use crate::pages::safe_next;
use authflow_shared::fingerprint;
use authflow_shared::request::encode_query_value;
use serde::Deserialize;
use serde_json::json;

/// A code, as the API or a form sends it; exactly one of the two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeInput {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
    /// Forms carry where to go next.
    #[serde(default)]
    next: Option<String>,
}

impl CodeInput {
    fn code(&self) -> Result<Code<'_>, ApiError> {
        fn some(s: &Option<String>) -> Option<&str> {
            s.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        match (some(&self.code), some(&self.recovery_code)) {
            (Some(c), None) => Ok(Code::Totp(c)),
            (None, Some(r)) => Ok(Code::Recovery(r)),
            _ => Err(ApiError::Validation {
                field: "code",
                reason: "give code or recovery_code".into(),
            }),
        }
    }
}

/// The password and a code, for changes to the factors themselves.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordAndCode {
    password: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

/// Who an enrolment is for: the signed-in person, or a sign-in that must enrol first.
enum Enrollee {
    Session(String, authflow_shared::session::SessionRecord),
    Pending(String, PendingSignIn),
}

impl Enrollee {
    fn user_email(&self) -> (&str, &str) {
        match self {
            Enrollee::Session(_, r) => (&r.user_id, r.email.as_deref().unwrap_or("")),
            Enrollee::Pending(_, p) => (&p.user_id, &p.email),
        }
    }

    /// What an enrolment in flight is bound to: this session, or this pending sign-in. No
    /// other session of the account sees or replaces it.
    fn binder(&self) -> String {
        match self {
            Enrollee::Session(id, _) => format!("session:{id}"),
            Enrollee::Pending(secret, _) => format!("pending:{secret}"),
        }
    }
}

impl Api {
    pub(super) fn mfa(&self) -> Result<&Mfa, ApiError> {
        self.accounts.mfa.as_ref().ok_or(ApiError::NotFound)
    }

    pub(super) fn pending_cookie(&self, value: &str, max_age: u64) -> String {
        self.sso.cookies.flow_cookie(COOKIE, value, max_age)
    }

    /// The pending cookie's secret, when the request has one.
    pub(super) fn pending_secret(&self, req: &ApiRequest) -> Option<String> {
        match authflow_shared::cookie::find(
            req.cookies(),
            &self.sso.cookies.flow_cookie_name(COOKIE),
        ) {
            authflow_shared::cookie::CookieLookup::One(v) => Some(v.to_owned()),
            _ => None,
        }
    }

    /// The answer to a sign-in whose first factor was right and whose second is due:
    /// the pending cookie, and JSON saying which methods finish it, or (`browser`) 303 to
    /// the code prompt (the enrolment page when the account must enrol first).
    pub(crate) async fn second_factor_answer(
        &self,
        mut pending: PendingSignIn,
        next: &str,
        browser: bool,
    ) -> Result<HttpResponse, ApiError> {
        pending.next = Some(next.to_owned());
        let methods: Vec<&str> = if pending.must_enrol {
            vec!["totp_enroll"]
        } else {
            self.mfa()?.enrolled(&pending.user_id).await?.methods()
        };
        let secret = pending::remember(self.sso_states.as_ref(), &pending).await?;
        let mut resp = if browser {
            let page = if pending.must_enrol {
                Page::MfaSetup
            } else {
                Page::MfaPrompt
            };
            see_other(&format!(
                "{}?next={}",
                page.path(),
                encode_query_value(next)
            ))
        } else {
            json_response(200, &json!({"status": "mfa_required", "methods": methods}))
        };
        set_cookie(
            &mut resp,
            &self.pending_cookie(&secret, pending::TTL.as_secs()),
        );
        Ok(resp)
    }

    pub(crate) async fn second_factor_endpoint(
        &self,
        endpoint: Endpoint,
        req: &ApiRequest,
    ) -> Result<HttpResponse, ApiError> {
        let mfa = self.mfa()?;
        match endpoint {
            Endpoint::Mfa => {
                let (_, record) = self.accounts.sessions.current(req).await?;
                let e = mfa.enrolled(&record.user_id).await?;
                Ok(json_response(
                    200,
                    &json!({"totp": e.totp, "passkeys": e.passkeys, "recovery_codes_left": e.recovery_codes, "methods": e.methods()}),
                ))
            }
            Endpoint::MfaVerify => self.verify(mfa, req).await,
            Endpoint::TotpEnroll => {
                let who = self.enrollee(req).await?;
                let (user, email) = who.user_email();
                let enrolment = mfa.begin_totp(user, email, &who.binder()).await?;
                Ok(json_response(200, &json!(enrolment)))
            }
            Endpoint::TotpConfirm => self.confirm(mfa, req).await,
            Endpoint::TotpDisable | Endpoint::RecoveryRegenerate => {
                self.change_factors(mfa, endpoint, req).await
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// The signed-in person, else a sign-in that must enrol (`required = "always"`).
    async fn enrollee(&self, req: &ApiRequest) -> Result<Enrollee, ApiError> {
        match self.accounts.sessions.current(req).await {
            Ok((id, record)) => return Ok(Enrollee::Session(id, record)),
            Err(ApiError::Unauthenticated) => {}
            Err(e) => return Err(e),
        }
        let secret = self.pending_secret(req).ok_or(ApiError::Unauthenticated)?;
        let store = self.sso_states.as_ref();
        let p = pending::take(store, &secret)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        // The device that gave the password, or nobody (the pending sign-in is used up).
        if !fingerprint::matches(&p.fingerprint, &self.accounts.sessions.fingerprint_of(req)) {
            tracing::warn!(user = %p.user_id, "enrolment from another device than the password: refused");
            return Err(ApiError::InvalidToken);
        }
        // Looked at, not used: put back for the confirmation.
        pending::put(store, &secret, &p).await?;
        if !p.must_enrol {
            return Err(ApiError::Unauthenticated);
        }
        Ok(Enrollee::Pending(secret, p))
    }

    /// `POST mfa/totp/confirm`: turns the authenticator on and shows the recovery codes once
    /// (a page for a form). For a sign-in that had to enrol, this also starts its session.
    async fn confirm(&self, mfa: &Mfa, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let input: CodeInput = req.input()?;
        let Code::Totp(code) = input.code()? else {
            return Err(ApiError::Validation {
                field: "code",
                reason: "give the code from the app".into(),
            });
        };
        let who = self.enrollee(req).await?;
        let (user, email) = who.user_email();
        let (user, email) = (user.to_owned(), email.to_owned());
        let (user, email) = (user.as_str(), email.as_str());
        let codes = self
            .accounts
            .throttle
            .guard_code(user, mfa.confirm_totp(user, code, &who.binder()))
            .await;
        metrics::mfa("totp_enroll", &codes);
        let codes = codes?;
        tracing::info!(user = %user, "authenticator enrolled");
        let next = safe_next(input.next.as_deref());
        let mut resp = if req.is_form() {
            self.pages.recovery_codes(&codes, &next, &req.headers)
        } else {
            json_response(200, &json!({"recovery_codes": codes}))
        };
        // Turning a factor on signs every other device out: whoever had the password alone
        // (the reason to turn it on) keeps no session.
        let keep = match who {
            Enrollee::Session(id, _) => {
                self.stepped_up(&id, Proof::Totp).await?;
                id
            }
            Enrollee::Pending(secret, p) => {
                let _ = pending::take(self.sso_states.as_ref(), &secret).await?;
                let (token, _) = self
                    .accounts
                    .finish_second_factor(req, &p, Proof::Totp)
                    .await?;
                let id = token.id();
                let sessions = &self.accounts.sessions;
                set_cookie(&mut resp, &sessions.set_cookie(&token));
                set_cookie(&mut resp, &self.pending_cookie("", 0));
                id
            }
        };
        let ended = self.accounts.sessions.end_others(user, &keep).await?;
        metrics::revoked(Revocation::OwnerOthers, ended);
        mfa.factors_changed(email, &self.pages.language(&req.headers));
        Ok(resp)
    }

    /// `POST mfa/verify`: finishes a pending sign-in, or steps the session up.
    async fn verify(&self, mfa: &Mfa, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let input: CodeInput = req.input()?;
        let code = input.code()?;
        let lang = self.pages.language(&req.headers);
        let Some(secret) = self.pending_secret(req) else {
            return self
                .step_up(mfa, req, &code, input.next.as_deref(), &lang)
                .await;
        };
        let store = self.sso_states.as_ref();
        let p = pending::take(store, &secret)
            .await?
            .ok_or(ApiError::InvalidToken)?;
        if p.must_enrol {
            pending::put(store, &secret, &p).await?;
            return Err(ApiError::SecondFactor("set up an authenticator first"));
        }
        if !fingerprint::matches(&p.fingerprint, &self.accounts.sessions.fingerprint_of(req)) {
            tracing::warn!(user = %p.user_id, "second factor from another device than the password: refused");
            return Err(ApiError::InvalidToken);
        }
        let proof = self
            .check_code(mfa, &p.user_id, &p.email, &code, &lang)
            .await;
        let proof = match proof {
            Ok(proof) => proof,
            Err(e @ (ApiError::InvalidCode | ApiError::AccountLocked(_))) => {
                pending::put(store, &secret, &p).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let (token, record) = self.accounts.finish_second_factor(req, &p, proof).await?;
        let next = p
            .next
            .clone()
            .unwrap_or_else(|| safe_next(input.next.as_deref()));
        let mut resp = if req.is_form() {
            see_other(&next)
        } else {
            json_response(
                200,
                &json!({"user_id": record.user_id, "email": record.email, "expires_at": record.expires_at / 1000}),
            )
        };
        let sessions = &self.accounts.sessions;
        set_cookie(&mut resp, &sessions.set_cookie(&token));
        set_cookie(&mut resp, &self.pending_cookie("", 0));
        Ok(resp)
    }

    /// A code for `user_id` under the per-account code throttle; a recovery code used is
    /// mailed to the owner. Counted either way.
    async fn check_code(
        &self,
        mfa: &Mfa,
        user_id: &str,
        email: &str,
        code: &Code<'_>,
        lang: &str,
    ) -> Result<Proof, ApiError> {
        let result = self
            .accounts
            .throttle
            .guard_code(user_id, mfa.check(user_id, code))
            .await;
        let method = match code {
            Code::Totp(_) => "totp",
            Code::Recovery(_) => "recovery_code",
        };
        metrics::mfa(method, &result);
        if let Ok(Proof::RecoveryCode) = result {
            tracing::warn!(user = %user_id, "a recovery code was used");
            mfa.recovery_code_used(email, lang);
        }
        result
    }

    /// A session proves a factor again: `mfa_time` now (a new record, so every gateway's
    /// cache hears of it).
    async fn step_up(
        &self,
        mfa: &Mfa,
        req: &ApiRequest,
        code: &Code<'_>,
        next: Option<&str>,
        lang: &str,
    ) -> Result<HttpResponse, ApiError> {
        let (id, record) = self.accounts.sessions.current(req).await?;
        let email = record.email.clone().unwrap_or_default();
        let proof = self
            .check_code(mfa, &record.user_id, &email, code, lang)
            .await?;
        let mfa_time = self.stepped_up(&id, proof).await?;
        tracing::info!(user = %record.user_id, method = proof.as_str(), "session stepped up");
        Ok(if req.is_form() {
            see_other(&safe_next(next))
        } else {
            json_response(
                200,
                &json!({"status": "stepped_up", "mfa_time": mfa_time / 1000}),
            )
        })
    }

    /// Writes the factor into session `id`: `amr` gains it, `mfa_time` is now.
    pub(super) async fn stepped_up(&self, id: &str, proof: Proof) -> Result<u64, ApiError> {
        let now = authflow_shared::now_ms();
        let amr = proof.amr();
        let updated = self
            .accounts
            .sessions
            .store
            .update(
                id,
                &move |r: &mut authflow_shared::session::SessionRecord| {
                    if !r.claims.amr.iter().any(|m| m == amr) {
                        r.claims.amr.push(amr.to_owned());
                    }
                    r.claims.mfa_time = Some(now);
                },
                None,
            )
            .await?;
        updated.map(|_| now).ok_or(ApiError::Unauthenticated)
    }

    /// `POST mfa/totp/disable` and `mfa/recovery/regenerate`: the password (checked like a
    /// sign-in) and a code first. Disabling ends every other session.
    async fn change_factors(
        &self,
        mfa: &Mfa,
        endpoint: Endpoint,
        req: &ApiRequest,
    ) -> Result<HttpResponse, ApiError> {
        let input: PasswordAndCode = req.input()?;
        let (id, record) = self.accounts.sessions.current(req).await?;
        let user = record.user_id.as_str();
        let email = record.email.clone().ok_or(ApiError::InvalidCredentials)?;
        self.accounts
            .check_password(req, &email, user, &input.password)
            .await?;
        let code = CodeInput {
            code: input.code,
            recovery_code: input.recovery_code,
            next: None,
        };
        let lang = self.pages.language(&req.headers);
        self.check_code(mfa, user, &email, &code.code()?, &lang)
            .await?;
        if endpoint == Endpoint::RecoveryRegenerate {
            let codes = mfa.new_codes(user).await?;
            tracing::info!(user = %user, "new recovery codes");
            mfa.factors_changed(&email, &lang);
            return Ok(if req.is_form() {
                self.pages
                    .recovery_codes(&codes, &Page::Devices.path(), &req.headers)
            } else {
                json_response(200, &json!({"recovery_codes": codes}))
            });
        }
        mfa.disable(user).await?;
        mfa.factors_changed(&email, &lang);
        let ended = self.accounts.sessions.end_others(user, &id).await?;
        metrics::revoked(Revocation::OwnerOthers, ended);
        tracing::info!(user = %user, ended, "authenticator disabled; other sessions ended");
        Ok(json_response(
            200,
            &json!({"status": "disabled", "revoked": ended}),
        ))
    }

    /// `GET /auth/mfa/setup`: the enrolment page (the same secret until it is confirmed).
    pub(crate) async fn mfa_setup_page(&self, req: &ApiRequest) -> HttpResponse {
        let Ok(mfa) = self.mfa() else {
            return ApiError::NotFound.response();
        };
        let who = match self.enrollee(req).await {
            Ok(who) => who,
            Err(ApiError::Unauthenticated) => {
                return self
                    .pages
                    .get(&req.path, None, &req.headers)
                    .unwrap_or_else(|| ApiError::Unauthenticated.response())
            }
            Err(e) => return e.response(),
        };
        let (user, email) = who.user_email();
        match mfa.enrolment(user, email, &who.binder()).await {
            Ok(e) => self.pages.mfa_setup(&e, req.query.as_deref(), &req.headers),
            Err(ApiError::SecondFactor(_)) => {
                see_other(&format!("{}?notice=mfa_enrolled", Page::Devices.path()))
            }
            Err(e) => e.response(),
        }
    }
}
