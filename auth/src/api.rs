//! The HTTP API under `/api/v1/simple_auth/` and `/health`: routes a request to its
//! [`Endpoint`], reads the endpoint's input (JSON or form, the same type), runs the flow and
//! answers JSON. Form posts get the same outcome as a redirect ([`crate::forms`]).

use crate::config::AuthConfig;
use crate::endpoint::{Endpoint, Page};
use crate::error::ApiError;
use crate::flows::{Accounts, Outcome};
use crate::http::{json_response, set_cookie, uncached, ApiRequest, HttpResponse};
use crate::mail::MailGate;
use crate::metrics::{self, Revocation};
use crate::pages::safe_next;
use crate::pages::Pages;
use crate::sessions::Sessions;
use crate::sso::flow::Sso;
use crate::sso::state::CookieRules;
use crate::throttle::SignInThrottle;
use crate::users::UserProvider;
use authflow_shared::store::{AuthStore, LoginThrottle, SessionStore, ShortLived};
use bytes::Bytes;
use http::Method;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailOnly {
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    old_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandleOnly {
    handle: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetUpdate {
    token: String,
    new_password: String,
}

/// The per-address mail cooldown of `cfg`, kept with the sign-in counters.
pub fn mail_gate(cfg: &AuthConfig, counters: Arc<dyn LoginThrottle>) -> MailGate {
    MailGate::new(counters, cfg.throttle.mail_cooldown.0)
}

/// The user provider a config asks for, and the built-in store when that is it (second
/// factors keep their data beside its accounts).
pub struct Users {
    pub provider: Arc<dyn UserProvider>,
    pub builtin: Option<Arc<crate::users::builtin::BuiltinUsers>>,
}

/// The service: the account flows behind their endpoints, and the pages.
pub struct Api {
    pub accounts: Accounts,
    pub pages: Arc<Pages>,
    /// The external providers (`[[identity.providers]]`).
    pub sso: Sso,
    /// Where provider sign-ins and waiting links are kept between requests.
    pub sso_states: Arc<dyn ShortLived>,
    /// `[identity] password`: the password endpoints answer.
    pub password_enabled: bool,
}

impl Api {
    pub fn new(
        cfg: &AuthConfig,
        users: Users,
        store: Arc<dyn SessionStore>,
        auth_store: Arc<dyn AuthStore>,
        pages: Arc<Pages>,
    ) -> Result<Self, String> {
        let sessions = Sessions::new(store, &cfg.session, &cfg.trusted_proxies)
            .with_max_per_user(cfg.max_sessions_per_user);
        let throttle: Arc<dyn LoginThrottle> = auth_store.clone();
        let sso_states: Arc<dyn ShortLived> = auth_store;
        let mail_gate = mail_gate(cfg, throttle.clone());
        let cookie = sessions.cookie();
        let rules = CookieRules {
            prefix: authflow_shared::cookie::secure_prefix(&cookie.name).unwrap_or(""),
            secure: cookie.secure,
        };
        let sso = Sso::new(&cfg.identity, cfg.public_url(), sso_states.clone(), rules);
        let mfa = crate::mfa::Mfa::new(
            &cfg.mfa,
            &cfg.pages.product_name,
            cfg.public_url(),
            users.builtin.as_deref(),
            sso_states.clone(),
        )?;
        let users = users.provider;
        let throttle = SignInThrottle::new(throttle, cfg.throttle.policy(), users.clone());
        Ok(Api {
            accounts: Accounts::new(users, sessions, throttle, mail_gate, mfa),
            pages,
            sso,
            sso_states,
            password_enabled: cfg.identity.password,
        })
    }

    /// The user provider's name, for logs.
    pub fn provider_name(&self) -> &'static str {
        self.accounts.users.name()
    }

    /// Routes one request: pages, then the API. Form posts (and a browser following an
    /// emailed link) get redirects instead of JSON.
    pub async fn handle(&self, req: &ApiRequest) -> HttpResponse {
        if req.method == Method::GET {
            if let Some(resp) = self.sso_get(req).await {
                return resp;
            }
            if req.path == Page::Devices.path() {
                return self.devices_page(req).await;
            }
            if req.path == Page::MfaSetup.path() {
                return self.mfa_setup_page(req).await;
            }
            if let Some(page) = self
                .pages
                .get(&req.path, req.query.as_deref(), &req.headers)
            {
                return page;
            }
        }
        if req.method == Method::POST && req.is_cross_site() {
            tracing::warn!(path = req.path.as_str(), "cross-site POST refused");
            return ApiError::CrossSite.response();
        }
        let endpoint = Endpoint::from_path(&req.path);
        let result = match endpoint {
            Some(e) if !self.password_enabled && e.uses_password() => Err(ApiError::NotFound),
            Some(e) if e.method() == req.method => self.run(e, req).await,
            Some(e) => Err(ApiError::MethodNotAllowed(e.allow())),
            None => Err(ApiError::NotFound),
        };
        if let Some(e) = endpoint {
            if req.is_form() || (e == Endpoint::VerifyEmail && req.wants_html()) {
                return crate::forms::redirect_after(req, e, result);
            }
        }
        result.unwrap_or_else(|e| {
            match &e {
                ApiError::SessionStore(m) | ApiError::UserStore(m) => {
                    tracing::error!(path = req.path.as_str(), error = %m, "dependency unavailable")
                }
                other => {
                    tracing::info!(path = req.path.as_str(), error = %other, "request refused")
                }
            }
            e.response()
        })
    }

    /// One handler per endpoint: input in, flow, JSON out.
    async fn run(&self, endpoint: Endpoint, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let accounts = &self.accounts;
        match endpoint {
            Endpoint::Livez => Ok(json_response(200, &json!({"status": "ok"}))),
            Endpoint::Readyz | Endpoint::Health => Ok(self.health().await),
            Endpoint::SignUp => {
                let c: Credentials = req.input()?;
                let lang = self.pages.language(&req.headers);
                let result = accounts.sign_up(&c.email, &c.password, &lang).await;
                metrics::sign_up(&result);
                result?;
                Ok(json_response(
                    202,
                    &json!({"status": "pending_verification", "message": "Check your email to continue."}),
                ))
            }
            Endpoint::SignIn => {
                let c: Credentials = req.input()?;
                let result = accounts.sign_in(req, &c.email, &c.password).await;
                metrics::sign_in(&result);
                let (token, record) = match result? {
                    Outcome::Session(token, record) => (token, record),
                    Outcome::SecondFactor(pending) => {
                        let next = safe_next(req.form_field("next").as_deref());
                        return self
                            .second_factor_answer(pending, &next, req.is_form())
                            .await;
                    }
                };
                let mut resp = json_response(
                    200,
                    &json!({"user_id": record.user_id, "email": record.email, "expires_at": record.expires_at / 1000}),
                );
                let sessions = &accounts.sessions;
                let cookie = sessions.set_cookie(&token);
                set_cookie(&mut resp, &cookie);
                Ok(resp)
            }
            Endpoint::Logout => {
                accounts.sign_out(req).await?;
                let mut resp = uncached(204, None, Bytes::new());
                set_cookie(&mut resp, &accounts.sessions.cookie().clear());
                Ok(resp)
            }
            Endpoint::ForgotPassword => {
                let b: EmailOnly = req.input()?;
                let lang = self.pages.language(&req.headers);
                accounts.forgot_password(&b.email, &lang).await?;
                Ok(json_response(
                    202,
                    &json!({"status": "accepted", "message": "If an account exists for this address, a reset link is on its way."}),
                ))
            }
            Endpoint::ResetPassword => {
                let b: ResetUpdate = req.input()?;
                let result = accounts
                    .reset_password(req, &b.token, &b.new_password)
                    .await;
                metrics::reset_finished(&result);
                result?;
                Ok(json_response(200, &json!({"status": "password_updated"})))
            }
            Endpoint::VerifyEmail => {
                accounts
                    .verify_email(req.query_param("token").as_deref())
                    .await?;
                Ok(json_response(200, &json!({"status": "email_verified"})))
            }
            Endpoint::ChangePassword => {
                let b: PasswordChange = req.input()?;
                let result = accounts
                    .change_password(req, &b.old_password, &b.new_password)
                    .await;
                metrics::password_changed(&result);
                let revoked = result?;
                Ok(json_response(
                    200,
                    &json!({"status": "password_updated", "revoked": revoked}),
                ))
            }
            Endpoint::Sessions
            | Endpoint::SessionRevoke
            | Endpoint::SessionRevokeOthers
            | Endpoint::SessionRevokeAll => self.own_sessions(endpoint, req).await,
            Endpoint::Providers => Ok(self.providers_json()),
            Endpoint::SsoLink => self.sso_link(req).await,
            Endpoint::Identities => self.own_identities(false, req).await,
            Endpoint::IdentityUnlink => self.own_identities(true, req).await,
            Endpoint::Mfa
            | Endpoint::MfaVerify
            | Endpoint::TotpEnroll
            | Endpoint::TotpConfirm
            | Endpoint::TotpDisable
            | Endpoint::RecoveryRegenerate => self.second_factor_endpoint(endpoint, req).await,
            Endpoint::PasskeyList
            | Endpoint::PasskeyRegisterStart
            | Endpoint::PasskeyRegisterFinish
            | Endpoint::PasskeyDelete
            | Endpoint::PasskeyAuthStart
            | Endpoint::PasskeyAuthFinish => self.passkey_endpoint(endpoint, req).await,
        }
    }

    /// "Your devices", for the request's own session; without one, the sign-in page.
    async fn devices_page(&self, req: &ApiRequest) -> HttpResponse {
        let sessions = &self.accounts.sessions;
        let listed = async {
            let (id, record) = sessions.current(req).await?;
            let list = sessions.list(&record.user_id, Some(&id)).await?;
            let passkeys = self.own_passkeys(&record.user_id).await?;
            Ok::<_, ApiError>((list, passkeys))
        };
        match listed.await {
            Ok((list, passkeys)) => self.pages.devices(
                &list,
                &passkeys,
                authflow_shared::now_ms(),
                req.query.as_deref(),
                &req.headers,
            ),
            Err(ApiError::Unauthenticated) => self
                .pages
                .get(&req.path, None, &req.headers)
                .unwrap_or_else(|| ApiError::Unauthenticated.response()),
            Err(e) => {
                tracing::error!(error = %e, "devices page: dependency unavailable");
                e.response()
            }
        }
    }

    /// The signed-in user's own sessions: list, end one, end the others, end all.
    async fn own_sessions(
        &self,
        endpoint: Endpoint,
        req: &ApiRequest,
    ) -> Result<HttpResponse, ApiError> {
        let sessions = &self.accounts.sessions;
        let (id, record) = sessions.current(req).await?;
        let user = record.user_id.as_str();
        match endpoint {
            Endpoint::SessionRevoke => {
                let b: HandleOnly = req.input()?;
                if !sessions.end(user, b.handle.trim()).await? {
                    return Err(ApiError::NotFound);
                }
                metrics::revoked(Revocation::OwnerOne, 1);
                tracing::info!(user = %user, "one session signed out by its owner");
                Ok(uncached(204, None, Bytes::new()))
            }
            Endpoint::SessionRevokeOthers => {
                let revoked = sessions.end_others(user, &id).await?;
                metrics::revoked(Revocation::OwnerOthers, revoked);
                tracing::info!(user = %user, revoked, "other sessions signed out by their owner");
                Ok(json_response(200, &json!({ "revoked": revoked })))
            }
            Endpoint::SessionRevokeAll => {
                let revoked = sessions.revoke_user(user).await?;
                metrics::revoked(Revocation::OwnerAll, revoked);
                tracing::info!(user = %user, revoked, "signed out everywhere by the owner");
                let mut resp = uncached(204, None, Bytes::new());
                set_cookie(&mut resp, &sessions.cookie().clear());
                Ok(resp)
            }
            _ => {
                let list = sessions.list(user, Some(&id)).await?;
                Ok(json_response(200, &json!({ "sessions": list })))
            }
        }
    }

    async fn health(&self) -> HttpResponse {
        let store = &self.accounts.sessions.store;
        let users = &self.accounts.users;
        let (redis, user_store) = tokio::join!(store.ping(), users.health());
        let ok = redis.is_ok() && user_store.is_ok();
        json_response(
            if ok { 200 } else { 503 },
            &json!({
                "status": if ok { "ok" } else { "unavailable" },
                store.kind(): if redis.is_ok() { "up" } else { "down" },
                "user_store": { "provider": users.name(), "state": if user_store.is_ok() { "up" } else { "down" } },
            }),
        )
    }
}
