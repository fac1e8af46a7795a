//! The passkey endpoints, on the [`Api`] (JSON; the pages run them with
//! `/auth/static/passkey.js`):
//! - `GET mfa/webauthn`: the signed-in person's passkeys (name, created, last used);
//! - `POST mfa/webauthn/register/start` `{}` and `/finish {ceremony, name, credential}`
//!   (signed in): a new passkey; the account's first factor also answers recovery codes;
//! - `POST mfa/webauthn/delete {id}`: a session whose second factor is fresh
//!   ([`FRESH_FACTOR`]), not the password: removing a factor is guarded by a factor, the way
//!   a step-up route is, and a form that fails for staleness goes to the prompt first;
//! - `POST mfa/webauthn/authenticate/start` `{}` and `/finish {ceremony, credential}`: with
//!   the pending cookie, the second factor of a sign-in (amr `hwk`); with a session, a
//!   step-up; with neither and `passwordless = true`, a sign-in by the passkey alone
//!   ([`Proof::Passwordless`]).
//!
//! Every failed authentication counts against the account under the same per-account
//! throttle as a wrong code ([`crate::throttle::SignInThrottle::guard_code`]).

use super::passkey::{credential_id_text, user_handle, Ceremony, Passkeys, Requester, Stage};
use super::pending::{self, PendingSignIn};
use super::{Mfa, Proof};
use crate::api::Api;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::http::{json_response, set_cookie, ApiRequest, HttpResponse};
use crate::metrics;
use authflow_shared::digest::hash_hex;
use authflow_shared::fingerprint;
use authflow_shared::session::SessionRecord;
use authflow_shared::token::SessionToken;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use webauthn_rs::prelude::PublicKeyCredential;

/// How recently a session must have proved a second factor to remove a passkey.
pub const FRESH_FACTOR: Duration = Duration::from_secs(600);

/// The longest name a passkey may be given.
const MAX_NAME: usize = 64;

/// A start takes an empty JSON object (JSON, so that another site's form cannot post it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFinish {
    ceremony: String,
    #[serde(default)]
    name: String,
    credential: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFinish {
    ceremony: String,
    credential: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdOnly {
    id: String,
}

/// The name a person gave a passkey: trimmed, at most [`MAX_NAME`] characters, no control
/// characters; "Passkey" when empty.
fn passkey_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::Validation {
            field: "name",
            reason: format!("at most {MAX_NAME} characters, no control characters"),
        });
    }
    Ok(if name.is_empty() { "Passkey" } else { name }.to_owned())
}

fn session_requester(session_id: &str) -> Requester {
    Requester::Session(hash_hex(session_id.as_bytes()))
}

fn pending_requester(secret: &str) -> Requester {
    Requester::Pending(hash_hex(secret.as_bytes()))
}

impl Api {
    pub(crate) async fn passkey_endpoint(
        &self,
        endpoint: Endpoint,
        req: &ApiRequest,
    ) -> Result<HttpResponse, ApiError> {
        let mfa = self.mfa()?;
        let passkeys = mfa.passkeys()?;
        match endpoint {
            Endpoint::PasskeyList => {
                let (_, record) = self.accounts.sessions.current(req).await?;
                let list = mfa
                    .store()
                    .passkey_views(&record.user_id)
                    .await
                    .map_err(|e| ApiError::UserStore(e.to_string()))?;
                Ok(json_response(200, &json!({ "passkeys": list })))
            }
            Endpoint::PasskeyRegisterStart => {
                let _: Nothing = req.input()?;
                let (id, record) = self.accounts.sessions.current(req).await?;
                let existing = mfa
                    .store()
                    .passkeys(&record.user_id)
                    .await
                    .map_err(|e| ApiError::UserStore(e.to_string()))?;
                let challenge = passkeys
                    .begin_registration(
                        session_requester(&id),
                        &record.user_id,
                        record.email.as_deref().unwrap_or(&record.user_id),
                        &existing,
                    )
                    .await?;
                Ok(json_response(200, &json!(challenge)))
            }
            Endpoint::PasskeyRegisterFinish => {
                let result = self.register(mfa, passkeys, req).await;
                metrics::mfa("webauthn_enroll", &result);
                result
            }
            Endpoint::PasskeyDelete => self.delete_passkey(mfa, req).await,
            Endpoint::PasskeyAuthStart => {
                self.begin_passkey_authentication(mfa, passkeys, req).await
            }
            Endpoint::PasskeyAuthFinish => {
                let input: AuthFinish = req.input()?;
                let credential = Passkeys::assertion(input.credential)?;
                let ceremony = passkeys.take(&input.ceremony).await?;
                match ceremony.by.clone() {
                    Requester::Pending(h) => {
                        self.passkey_second_factor(mfa, passkeys, req, &h, ceremony, &credential)
                            .await
                    }
                    Requester::Session(h) => {
                        self.passkey_step_up(mfa, passkeys, req, &h, ceremony, &credential)
                            .await
                    }
                    Requester::Device(fp) => {
                        self.passwordless(mfa, passkeys, req, &fp, ceremony, &credential)
                            .await
                    }
                }
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// `register/finish`: the authenticator's answer to the ceremony this session began.
    /// Proving the new passkey (with user verification) counts as a fresh factor, as a TOTP
    /// confirmation does.
    async fn register(
        &self,
        mfa: &Mfa,
        passkeys: &Passkeys,
        req: &ApiRequest,
    ) -> Result<HttpResponse, ApiError> {
        let input: RegisterFinish = req.input()?;
        let name = passkey_name(&input.name)?;
        let (id, record) = self.accounts.sessions.current(req).await?;
        let ceremony = passkeys.take(&input.ceremony).await?;
        let Stage::Register { user_id, state } = ceremony.stage else {
            return Err(ApiError::InvalidToken);
        };
        if ceremony.by != session_requester(&id) || user_id != record.user_id {
            return Err(ApiError::InvalidToken);
        }
        let key = passkeys.finish_registration(&state, input.credential)?;
        let (key_id, codes) = mfa.add_passkey(&user_id, &key, &name).await?;
        self.stepped_up(&id, Proof::Passkey).await?;
        tracing::info!(user = %user_id, "passkey registered");
        let lang = self.pages.language(&req.headers);
        mfa.factors_changed(record.email.as_deref().unwrap_or(""), &lang);
        Ok(json_response(
            200,
            &json!({"id": key_id, "name": name, "recovery_codes": codes}),
        ))
    }

    /// `delete {id}`: needs a second factor proved within [`FRESH_FACTOR`].
    async fn delete_passkey(&self, mfa: &Mfa, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let input: IdOnly = req.input()?;
        let (_, record) = self.accounts.sessions.current(req).await?;
        let now = authflow_shared::now_ms();
        let fresh = record
            .claims
            .mfa_time
            .is_some_and(|t| now.saturating_sub(t) <= FRESH_FACTOR.as_millis() as u64);
        if !fresh {
            return Err(ApiError::SecondFactor(
                "prove a second factor first (mfa/verify or a passkey), then delete",
            ));
        }
        let deleted = mfa
            .store()
            .delete_passkey(&record.user_id, input.id.trim())
            .await
            .map_err(|e| ApiError::UserStore(e.to_string()))?;
        if !deleted {
            return Err(ApiError::NotFound);
        }
        tracing::info!(user = %record.user_id, "passkey deleted");
        let lang = self.pages.language(&req.headers);
        mfa.factors_changed(record.email.as_deref().unwrap_or(""), &lang);
        Ok(json_response(200, &json!({"status": "deleted"})))
    }

    /// `authenticate/start`: for the pending sign-in the cookie names, else for the session,
    /// else (passwordless) for whoever the authenticator says.
    async fn begin_passkey_authentication(
        &self,
        mfa: &Mfa,
        passkeys: &Passkeys,
        req: &ApiRequest,
    ) -> Result<HttpResponse, ApiError> {
        let _: Nothing = req.input()?;
        let store = self.sso_states.as_ref();
        if let Some(secret) = self.pending_secret(req) {
            if let Some(p) = pending::take(store, &secret).await? {
                // Looked at, not used: put back for the finish (or a code).
                pending::put(store, &secret, &p).await?;
                if p.must_enrol {
                    return Err(ApiError::SecondFactor("set up an authenticator first"));
                }
                let keys = self.passkeys_of(mfa, &p.user_id).await?;
                let c = passkeys
                    .begin_authentication(pending_requester(&secret), &p.user_id, &keys)
                    .await?;
                return Ok(json_response(200, &json!(c)));
            }
        }
        match self.accounts.sessions.current(req).await {
            Ok((id, record)) => {
                let keys = self.passkeys_of(mfa, &record.user_id).await?;
                let c = passkeys
                    .begin_authentication(session_requester(&id), &record.user_id, &keys)
                    .await?;
                Ok(json_response(200, &json!(c)))
            }
            Err(ApiError::Unauthenticated) if passkeys.passwordless => {
                let fp = self.accounts.sessions.fingerprint_of(req);
                let c = passkeys.begin_discovery(fp).await?;
                Ok(json_response(200, &json!(c)))
            }
            Err(e) => Err(e),
        }
    }

    /// The passkeys "Your devices" lists for `user_id` (none while passkeys are off).
    pub(crate) async fn own_passkeys(
        &self,
        user_id: &str,
    ) -> Result<Vec<super::store::PasskeyView>, ApiError> {
        match self.accounts.mfa.as_ref().filter(|m| m.passkeys.is_some()) {
            Some(mfa) => mfa
                .store()
                .passkey_views(user_id)
                .await
                .map_err(|e| ApiError::UserStore(e.to_string())),
            None => Ok(Vec::new()),
        }
    }

    async fn passkeys_of(
        &self,
        mfa: &Mfa,
        user_id: &str,
    ) -> Result<Vec<webauthn_rs::prelude::Passkey>, ApiError> {
        mfa.store()
            .passkeys(user_id)
            .await
            .map_err(|e| ApiError::UserStore(e.to_string()))
    }

    /// Checks `credential` against the ceremony's `stage` with `user_id`'s passkey of that
    /// id, under the per-account throttle; records the use (and the counter).
    async fn check_assertion(
        &self,
        mfa: &Mfa,
        passkeys: &Passkeys,
        user_id: &str,
        stage: Stage,
        credential: &PublicKeyCredential,
    ) -> Result<(), ApiError> {
        let check = async {
            let id = credential_id_text(credential.get_credential_id());
            let db = |e: sqlx::Error| ApiError::UserStore(e.to_string());
            let stored = mfa.store().passkey(&id).await.map_err(db)?;
            let Some(mut stored) = stored.filter(|s| s.user_id == user_id) else {
                return Err(ApiError::InvalidCode);
            };
            let changed = passkeys.finish_authentication(stage, credential, &mut stored.passkey)?;
            let now = authflow_shared::now_ms() as i64;
            mfa.store()
                .passkey_used(&id, &stored.passkey, changed, now)
                .await
                .map_err(db)
        };
        let result = self.accounts.throttle.guard_code(user_id, check).await;
        metrics::mfa("webauthn", &result);
        result
    }

    /// The second factor of the pending sign-in that began the ceremony: its session.
    async fn passkey_second_factor(
        &self,
        mfa: &Mfa,
        passkeys: &Passkeys,
        req: &ApiRequest,
        began_by: &str,
        ceremony: Ceremony,
        credential: &PublicKeyCredential,
    ) -> Result<HttpResponse, ApiError> {
        let secret = self.pending_secret(req).ok_or(ApiError::InvalidToken)?;
        if pending_requester(&secret) != Requester::Pending(began_by.to_owned()) {
            return Err(ApiError::InvalidToken);
        }
        let store = self.sso_states.as_ref();
        let p = pending::take(store, &secret)
            .await?
            .ok_or(ApiError::InvalidToken)?;
        let user_id = match &ceremony.stage {
            Stage::Authenticate { user_id, .. } => user_id.clone(),
            _ => return Err(ApiError::InvalidToken),
        };
        if user_id != p.user_id
            || !fingerprint::matches(&p.fingerprint, &self.accounts.sessions.fingerprint_of(req))
        {
            tracing::warn!(user = %p.user_id, "passkey for a sign-in begun elsewhere: refused");
            return Err(ApiError::InvalidToken);
        }
        match self
            .check_assertion(mfa, passkeys, &user_id, ceremony.stage, credential)
            .await
        {
            Ok(()) => {}
            Err(e @ (ApiError::InvalidCode | ApiError::AccountLocked(_))) => {
                pending::put(store, &secret, &p).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        let (token, record) = self
            .accounts
            .finish_second_factor(req, &p, Proof::Passkey)
            .await?;
        let mut resp = self.signed_in_answer(&token, &record, p.next.as_deref());
        set_cookie(&mut resp, &self.pending_cookie("", 0));
        Ok(resp)
    }

    /// A step-up of the session that began the ceremony.
    async fn passkey_step_up(
        &self,
        mfa: &Mfa,
        passkeys: &Passkeys,
        req: &ApiRequest,
        began_by: &str,
        ceremony: Ceremony,
        credential: &PublicKeyCredential,
    ) -> Result<HttpResponse, ApiError> {
        let (id, record) = self.accounts.sessions.current(req).await?;
        let user_id = match &ceremony.stage {
            Stage::Authenticate { user_id, .. } => user_id.clone(),
            _ => return Err(ApiError::InvalidToken),
        };
        if session_requester(&id) != Requester::Session(began_by.to_owned())
            || user_id != record.user_id
        {
            return Err(ApiError::InvalidToken);
        }
        self.check_assertion(mfa, passkeys, &user_id, ceremony.stage, credential)
            .await?;
        let mfa_time = self.stepped_up(&id, Proof::Passkey).await?;
        tracing::info!(user = %user_id, method = Proof::Passkey.as_str(), "session stepped up");
        Ok(json_response(
            200,
            &json!({"status": "stepped_up", "mfa_time": mfa_time / 1000}),
        ))
    }

    /// A sign-in by a discoverable passkey alone ([`Proof::Passwordless`]): the account is
    /// the one whose passkey the authenticator chose, if its user handle matches; a disabled
    /// account, or one whose address was never confirmed, is refused like a wrong password.
    async fn passwordless(
        &self,
        mfa: &Mfa,
        passkeys: &Passkeys,
        req: &ApiRequest,
        device: &str,
        ceremony: Ceremony,
        credential: &PublicKeyCredential,
    ) -> Result<HttpResponse, ApiError> {
        let sessions = &self.accounts.sessions;
        if !fingerprint::matches(device, &sessions.fingerprint_of(req)) {
            return Err(ApiError::InvalidToken);
        }
        let (handle, cred_id) = passkeys.identify(credential)?;
        let db = |e: sqlx::Error| ApiError::UserStore(e.to_string());
        let owner = mfa
            .store()
            .passkey(&credential_id_text(&cred_id))
            .await
            .map_err(db)?
            .map(|s| s.user_id)
            .filter(|u| user_handle(u) == handle);
        let Some(user_id) = owner else {
            tracing::info!("passwordless sign-in with an unknown passkey: refused");
            return Err(ApiError::InvalidCode);
        };
        self.check_assertion(mfa, passkeys, &user_id, ceremony.stage, credential)
            .await?;
        let account = mfa.store().account(&user_id).await.map_err(db)?;
        let Some(account) = account.filter(|a| a.verified && !a.disabled) else {
            return Err(ApiError::InvalidCredentials);
        };
        let who = PendingSignIn {
            roles: mfa.store().roles(&user_id).await.map_err(db)?,
            user_id,
            email: account.email,
            provider_data: None,
            amr: vec![Proof::Passkey.amr().to_owned()],
            idp: None,
            began_us: authflow_shared::now_us(),
            fingerprint: device.to_owned(),
            next: None,
            must_enrol: false,
            expires_ms: 0,
        };
        let (token, record) = self
            .accounts
            .finish_second_factor(req, &who, Proof::Passwordless)
            .await?;
        Ok(self.signed_in_answer(&token, &record, None))
    }

    /// A new session's answer: who, until when, where to go, and its cookie.
    fn signed_in_answer(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
        next: Option<&str>,
    ) -> HttpResponse {
        let mut resp = json_response(
            200,
            &json!({"user_id": record.user_id, "email": record.email, "expires_at": record.expires_at / 1000, "next": next}),
        );
        let sessions = &self.accounts.sessions;
        set_cookie(&mut resp, &sessions.set_cookie(token));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passkey_name_is_short_plain_text() {
        assert_eq!(passkey_name("  ").expect("empty"), "Passkey");
        assert_eq!(passkey_name(" Laptop ").expect("name"), "Laptop");
        assert!(passkey_name("a\nb").is_err());
        assert!(passkey_name(&"x".repeat(65)).is_err());
        assert_eq!(passkey_name("Schlüssel").expect("utf-8"), "Schlüssel");
    }
}
