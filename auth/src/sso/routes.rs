//! The HTTP side of provider sign-in, on the [`Api`]: `GET /auth/sso/<id>` and its
//! callback, the "link your account" post, the providers list, and a signed-in person's
//! linked identities. Every failure of a browser leg ends on the sign-in page with a message
//! code (never text from the request), is logged with its reason and counted.

use super::link::{self, Landing, PendingLink, LINK_COOKIE};
use crate::api::Api;
use crate::endpoint::{Page, PAGE_PREFIX};
use crate::error::ApiError;
use crate::flows::{Federated, Outcome};
use crate::http::{json_response, see_other, set_cookie, uncached, ApiRequest, HttpResponse};
use crate::metrics::{self, Revocation};
use crate::pages::safe_next;
use crate::users::roles::RoleMapping;
use authflow_shared::request::encode_query_value;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordOnly {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderOnly {
    provider: String,
}

/// The longest `next` a sign-in keeps (longer ones go to the default page): it is stored
/// with every sign-in begun.
const MAX_NEXT: usize = 1024;

/// `/auth/sso/<id>` and `/auth/sso/<id>/callback`: the provider id and whether it is the
/// callback.
fn sso_path(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix(PAGE_PREFIX)?.strip_prefix("/sso/")?;
    match rest.strip_suffix("/callback") {
        Some(id) => Some((id, true)),
        None => Some((rest, false)),
    }
}

/// A `302 Found` to `location` (what the provider legs answer).
fn found(location: &str) -> HttpResponse {
    let mut resp = see_other(location);
    *resp.status_mut() = http::StatusCode::FOUND;
    resp
}

/// The sign-in page with the message `code`, keeping `next`.
fn back_to_sign_in(code: &str, next: &str) -> HttpResponse {
    see_other(&format!(
        "{}?error={code}&next={}",
        Page::SignIn.path(),
        encode_query_value(next)
    ))
}

impl Api {
    /// GET on a provider path; `None` when the path is no provider path.
    pub async fn sso_get(&self, req: &ApiRequest) -> Option<HttpResponse> {
        let (id, callback) = sso_path(&req.path)?;
        let Some(provider) = self.sso.provider(id) else {
            return Some(ApiError::NotFound.response());
        };
        Some(if callback {
            self.sso_callback(provider, req).await
        } else {
            self.sso_start(provider, req).await
        })
    }

    async fn sso_start(&self, provider: &super::flow::Provider, req: &ApiRequest) -> HttpResponse {
        let id = provider.cfg.id.as_str();
        let next = Some(safe_next(req.query_param("next").as_deref()))
            .filter(|n| n.len() <= MAX_NEXT)
            .unwrap_or_else(|| safe_next(None));
        match self.sso.start(provider, &next).await {
            Ok((url, cookie)) => {
                let mut resp = found(&url);
                let rules = &self.sso.cookies;
                let in_flight = rules.sign_in_cookies(req.cookies());
                if in_flight.len() >= super::state::MAX_IN_FLIGHT {
                    for name in &in_flight {
                        set_cookie(&mut resp, &rules.clear_named(name));
                    }
                }
                set_cookie(&mut resp, &cookie);
                resp
            }
            Err(e) => {
                tracing::error!(provider = id, error = %e, "provider sign-in could not start");
                metrics::sso_sign_in(id, e.reason());
                back_to_sign_in(&format!("sso_{}", e.reason()), &next)
            }
        }
    }

    async fn sso_callback(
        &self,
        provider: &super::flow::Provider,
        req: &ApiRequest,
    ) -> HttpResponse {
        let id = provider.cfg.id.as_str();
        let (result, clear) = self.sso.finish(provider, req).await;
        let mut resp = match result {
            Ok(done) => self.land(provider, req, done).await,
            Err(e) => {
                tracing::warn!(provider = id, reason = e.reason(), error = %e, "provider sign-in refused");
                metrics::sso_sign_in(id, e.reason());
                back_to_sign_in(&format!("sso_{}", e.reason()), "/app/")
            }
        };
        if let Some(c) = clear {
            set_cookie(&mut resp, &c);
        }
        resp
    }

    /// After a callback passed every check: the account, a session, and `next`; or the
    /// link page; or the sign-in page saying why not.
    async fn land(
        &self,
        provider: &super::flow::Provider,
        req: &ApiRequest,
        done: super::flow::Finished,
    ) -> HttpResponse {
        let id = provider.cfg.id.as_str();
        let accounts = &self.accounts;
        let landing = link::resolve(
            accounts.users.as_ref(),
            &provider.cfg,
            &done.user,
            &done.next,
        )
        .await;
        let who = match landing {
            Ok(Landing::Account(who)) => Ok(who),
            Ok(Landing::Claimed(who)) => {
                let ended = accounts.sessions.revoke_user(&who.user_id).await;
                tracing::warn!(provider = id, user = %who.user_id, ended = ?ended.as_ref().ok(), "an unverified sign-up was taken over by a provider that verified its address");
                match ended {
                    Ok(n) => metrics::revoked(Revocation::EmailVerified, n),
                    Err(e) => return back_to_sign_in(e.code(), &done.next),
                }
                Ok(who)
            }
            Ok(Landing::LinkRequired(pending)) => {
                return self.ask_for_link(id, pending).await;
            }
            Ok(Landing::Refused(code)) => {
                tracing::info!(
                    provider = id,
                    reason = code,
                    "provider sign-in refused by the account rules"
                );
                metrics::sso_sign_in(id, code.trim_start_matches("sso_"));
                return back_to_sign_in(code, &done.next);
            }
            Err(e) => Err(e),
        };
        let outcome = match who {
            Ok(mut who) => {
                let mapped = RoleMapping::of(&provider.cfg).map(&done.user.groups);
                who.roles = merged(who.roles, mapped);
                accounts
                    .sign_in_federated(req, who, federated(provider, &done.user))
                    .await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Outcome::SecondFactor(pending)) => {
                metrics::sso_sign_in(id, "second_factor");
                self.second_factor_answer(pending, &done.next, true)
                    .await
                    .unwrap_or_else(|e| back_to_sign_in(e.code(), &done.next))
            }
            Ok(Outcome::Session(token, record)) => {
                tracing::info!(provider = id, user = %record.user_id, "signed in through a provider");
                metrics::sso_sign_in(id, "ok");
                let sessions = &accounts.sessions;
                let mut resp = found(&done.next);
                set_cookie(&mut resp, &sessions.set_cookie(&token));
                resp
            }
            Err(e) => {
                tracing::error!(provider = id, error = %e, "provider sign-in failed");
                metrics::sso_sign_in(id, "unavailable");
                back_to_sign_in(e.code(), &done.next)
            }
        }
    }

    /// Remembers the link and sends the person to the page that asks for the password.
    async fn ask_for_link(&self, id: &str, pending: PendingLink) -> HttpResponse {
        match link::remember(self.sso_states.as_ref(), &pending).await {
            Ok(secret) => {
                metrics::sso_sign_in(id, "link_required");
                let mut resp = see_other(&format!("{}?provider={id}", Page::Link.path()));
                set_cookie(
                    &mut resp,
                    &self.link_cookie(&secret, link::LINK_TTL.as_secs()),
                );
                resp
            }
            Err(e) => {
                tracing::error!(provider = id, error = %e, "link could not be remembered");
                metrics::sso_sign_in(id, "unavailable");
                back_to_sign_in("session_store_unavailable", &pending.next)
            }
        }
    }

    fn link_cookie(&self, secret: &str, max_age: u64) -> String {
        self.sso.cookies.flow_cookie(LINK_COOKIE, secret, max_age)
    }

    /// `POST sso/link {password}`: the existing account's password links the waiting
    /// identity and signs in (`amr` `pwd` and `fed`). A wrong password keeps the link
    /// waiting (the sign-in throttle counts the guesses).
    pub async fn sso_link(&self, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let input: PasswordOnly = req.input()?;
        let name = self.sso.cookies.flow_cookie_name(LINK_COOKIE);
        let secret = match authflow_shared::cookie::find(req.cookies(), &name) {
            authflow_shared::cookie::CookieLookup::One(v) => v.to_owned(),
            _ => return Err(ApiError::InvalidToken),
        };
        let store = self.sso_states.as_ref();
        let pending = link::take(store, &secret)
            .await?
            .ok_or(ApiError::InvalidToken)?;
        let accounts = &self.accounts;
        let result = accounts
            .link_with_password(req, &pending, &input.password)
            .await;
        let (token, record) = match result {
            Ok(Outcome::Session(token, record)) => (token, record),
            Ok(Outcome::SecondFactor(factor)) => {
                metrics::sso_sign_in(&pending.provider, "linked");
                let mut resp = self
                    .second_factor_answer(factor, &pending.next, req.is_form())
                    .await?;
                set_cookie(&mut resp, &self.link_cookie("", 0));
                return Ok(resp);
            }
            Err(e @ (ApiError::InvalidCredentials | ApiError::AccountLocked(_))) => {
                link::put_back(store, &secret, &pending).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        tracing::info!(provider = %pending.provider, user = %record.user_id, "identity linked to an existing account");
        metrics::sso_sign_in(&pending.provider, "linked");
        let sessions = &accounts.sessions;
        let mut resp = if req.is_form() {
            see_other(&pending.next)
        } else {
            json_response(
                200,
                &json!({"user_id": record.user_id, "next": pending.next}),
            )
        };
        set_cookie(&mut resp, &sessions.set_cookie(&token));
        set_cookie(&mut resp, &self.link_cookie("", 0));
        Ok(resp)
    }

    /// `GET providers`: the configured providers, for single-page apps.
    pub fn providers_json(&self) -> HttpResponse {
        let list: Vec<_> = self
            .sso
            .buttons()
            .into_iter()
            .map(|(id, name)| json!({"id": id, "display_name": name, "start_url": format!("{PAGE_PREFIX}/sso/{id}")}))
            .collect();
        json_response(
            200,
            &json!({"providers": list, "password": self.password_enabled}),
        )
    }

    /// `GET identities` and `POST identities/unlink`, for the signed-in person. Unlinking
    /// ends the sessions the identity started.
    pub async fn own_identities(
        &self,
        unlink: bool,
        req: &ApiRequest,
    ) -> Result<HttpResponse, ApiError> {
        let accounts = &self.accounts;
        let (id, record) = accounts.sessions.current(req).await?;
        let user = record.user_id.as_str();
        if !unlink {
            let list = accounts.users.identities(user).await?;
            return Ok(json_response(200, &json!({"identities": list})));
        }
        let b: ProviderOnly = req.input()?;
        match accounts.users.unlink_identity(user, &b.provider).await? {
            crate::users::Unlinked::NotLinked => Err(ApiError::NotFound),
            crate::users::Unlinked::LastWay => Err(ApiError::Validation {
                field: "provider",
                reason: "the last way to sign in to this account cannot be unlinked".into(),
            }),
            crate::users::Unlinked::Done => {
                let (ended, this_one) = accounts
                    .sessions
                    .end_by_provider(user, &b.provider, &id)
                    .await?;
                metrics::revoked(Revocation::OwnerOne, ended);
                tracing::info!(user = %user, provider = %b.provider, ended, "identity unlinked; its sessions ended");
                let mut resp = uncached(204, None, Bytes::new());
                if this_one {
                    set_cookie(&mut resp, &accounts.sessions.cookie().clear());
                }
                Ok(resp)
            }
        }
    }
}

/// A sign-in through `provider` as `user`: its upstream second factor counts only when the
/// provider is trusted with it.
fn federated<'a>(provider: &'a super::flow::Provider, user: &super::ProviderUser) -> Federated<'a> {
    Federated {
        idp: &provider.cfg.id,
        with_password: false,
        upstream_mfa: provider.cfg.trust_upstream_mfa && user.upstream_mfa,
    }
}

/// The account's roles and the provider's mapped ones, as one sorted list.
fn merged(mut account: Vec<String>, provider: Vec<String>) -> Vec<String> {
    account.extend(provider);
    account.sort_unstable();
    account.dedup();
    account.truncate(authflow_shared::roles::MAX_ROLES_PER_USER);
    account
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_paths() {
        assert_eq!(sso_path("/auth/sso/google"), Some(("google", false)));
        assert_eq!(
            sso_path("/auth/sso/google/callback"),
            Some(("google", true))
        );
        assert_eq!(sso_path("/auth/signin"), None);
    }
}
