//! Issuing and ending sessions: a new session bound to the client's device fingerprint, and
//! the revocation of whatever session a request presents. The record format and keys are the
//! shared crate's; this module decides which fingerprint to trust.

use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::users::SignedIn;
use authflow_shared::client_ip;
use authflow_shared::contract::SessionContract;
use authflow_shared::cookie::{self, CookieLookup, CookieSpec};
use authflow_shared::fingerprint::{self, FINGERPRINT_HEADER};
use authflow_shared::session::{Claims, SessionRecord};
use authflow_shared::store::{SessionStore, StoreError};
use authflow_shared::token::{public_handle, SessionToken};
use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest User-Agent kept with a session (enough to describe the device).
const MAX_USER_AGENT: usize = 256;

/// The device's `User-Agent`, shortened to what a session keeps.
fn user_agent(req: &ApiRequest) -> Option<String> {
    req.headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| truncate(ua, MAX_USER_AGENT).to_owned())
}

pub struct Sessions {
    pub store: Arc<dyn SessionStore>,
    contract: SessionContract,
    trusted_proxies: Vec<IpNet>,
    /// Sessions one user may hold at once; the oldest are ended beyond it (0: no cap).
    max_per_user: usize,
}

/// One session as its owner (or an operator) sees it: nothing here opens it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// What to name it by when signing it out ([`public_handle`]).
    pub handle: String,
    /// "Firefox on Linux".
    pub device: String,
    /// The signing-in address with its last part hidden.
    pub ip: Option<String>,
    /// Unix milliseconds.
    pub created_at: u64,
    pub last_seen_at: u64,
    pub expires_at: u64,
    /// The session the request came with.
    pub current: bool,
}

impl SessionView {
    pub fn new(id: &str, record: &SessionRecord, current: Option<&str>) -> Self {
        SessionView {
            handle: public_handle(id),
            device: crate::devices::describe(record.user_agent.as_deref()),
            ip: record.ip_hint.clone(),
            created_at: record.created_at,
            last_seen_at: record.last_seen_at,
            expires_at: record.expires_at,
            current: current == Some(id),
        }
    }
}

impl Sessions {
    pub fn new(
        store: Arc<dyn SessionStore>,
        contract: &SessionContract,
        trusted_proxies: &[IpNet],
    ) -> Self {
        Sessions {
            store,
            contract: contract.clone(),
            trusted_proxies: trusted_proxies.to_vec(),
            max_per_user: 0,
        }
    }

    /// At most `max` sessions per user (0: no cap); a sign-in beyond it ends the oldest.
    pub fn with_max_per_user(mut self, max: usize) -> Self {
        self.max_per_user = max;
        self
    }

    pub fn cookie(&self) -> CookieSpec {
        self.contract.cookie()
    }

    /// The cookie's lifetime: the absolute timeout.
    pub fn cookie_max_age(&self) -> Duration {
        self.contract.absolute_timeout.0
    }

    /// The `Set-Cookie` that hands a new session's `token` to the browser, for every way of
    /// signing in.
    pub fn set_cookie(&self, token: &SessionToken) -> String {
        self.cookie().set(token.expose(), self.cookie_max_age())
    }

    /// Writes a new session for `who`, bound to this client's device fingerprint, unless the
    /// account's sessions were revoked after `began_us` (when the sign-in began checking the
    /// password): then the password it checked may be the old one, and it is refused as
    /// wrong.
    pub async fn start(
        &self,
        req: &ApiRequest,
        who: SignedIn,
        began_us: u64,
    ) -> Result<(SessionToken, SessionRecord), ApiError> {
        self.start_as(req, who, began_us, Claims::password).await
    }

    /// As [`Sessions::start`], with the claims `claims(now_ms, roles)` makes (a provider
    /// sign-in's `fed`).
    pub async fn start_as(
        &self,
        req: &ApiRequest,
        who: SignedIn,
        began_us: u64,
        claims: impl FnOnce(u64, Vec<String>) -> Claims,
    ) -> Result<(SessionToken, SessionRecord), ApiError> {
        let token = SessionToken::for_user(&who.user_id);
        let (idle, absolute) = (
            self.contract.idle_timeout.0,
            self.contract.absolute_timeout.0,
        );
        let now = authflow_shared::now_ms();
        let mut record = SessionRecord::new(
            who.user_id,
            // Empty when the address is not verified (a provider's unverified claim).
            Some(who.email).filter(|e| !e.is_empty()),
            self.client_fingerprint(req),
            now,
            absolute,
        );
        record.provider_data = who.provider_data;
        record.claims = claims(now, who.roles);
        record.user_agent = user_agent(req);
        record.ip_hint = Some(client_ip::hint(self.client_ip(req)));
        match self
            .store
            .create(&token.id(), &record, idle.min(absolute), began_us)
            .await
        {
            Ok(()) => {
                self.enforce_cap(&record.user_id).await;
                Ok((token, record))
            }
            Err(StoreError::Revoked) => {
                tracing::warn!(user = %record.user_id, "sign-in raced a password reset: refused");
                Err(ApiError::InvalidCredentials)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The sign-in of `who` presents a session the gateway put aside (`on_fingerprint_mismatch
    /// = "reauth"`: a request came from another device) that belongs to the same account:
    /// it is re-bound to this device (the one it was bound to loses it) with fresh claims,
    /// and kept under the same token. `None` when there is no such session; the sign-in then
    /// starts a new one as usual.
    pub async fn rebind_presented(
        &self,
        req: &ApiRequest,
        who: &SignedIn,
    ) -> Result<Option<(SessionToken, SessionRecord)>, ApiError> {
        let Some(token) = self.presented_token(req) else {
            return Ok(None);
        };
        let id = token.id();
        let Some(record) = self.store.lookup(&id).await? else {
            return Ok(None);
        };
        if record.held_since.is_none() || record.user_id != who.user_id {
            return Ok(None);
        }
        let now = authflow_shared::now_ms();
        let (idle, absolute) = (
            self.contract.idle_timeout.0,
            self.contract.absolute_timeout.0,
        );
        let left = record.ends_at(absolute).saturating_sub(now);
        if left == 0 {
            return Ok(None);
        }
        let fp = self.client_fingerprint(req);
        let ua = user_agent(req);
        let ip = client_ip::hint(self.client_ip(req));
        let claims = Claims::password(now, who.roles.clone());
        let rebind = move |r: &mut SessionRecord| {
            let old = std::mem::replace(&mut r.fingerprint, fp.clone());
            r.replaced_fingerprint = Some(old);
            r.held_since = None;
            r.user_agent = ua.clone();
            r.ip_hint = Some(ip.clone());
            r.claims = claims.clone();
            r.last_seen_at = now;
        };
        let lifetime = Duration::from_millis(left);
        let reset = authflow_shared::store::Reset {
            record: lifetime,
            seen: Some((now, idle.min(lifetime))),
        };
        Ok(self
            .store
            .update(&id, &rebind, Some(reset))
            .await?
            .map(|record| (token, record)))
    }

    /// After a sign-in that read the account's roles from the provider (Supabase
    /// `app_metadata.roles`, an identity provider's claim): if another live session of the
    /// account holds other roles, every session gets the new ones, so a change made at the
    /// provider reaches them all at this sign-in. A failure is logged; the new session has
    /// the new roles either way.
    pub async fn align_roles(&self, record: &SessionRecord) {
        let user = &record.user_id;
        let roles = &record.claims.roles;
        let stale = match self.store.list_user(user).await {
            Ok(list) => list.iter().any(|(_, r)| &r.claims.roles != roles),
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "roles of other sessions not checked");
                return;
            }
        };
        if stale {
            match self.store.set_roles(user, roles).await {
                Ok(n) => {
                    tracing::info!(user = %user, sessions = n, "roles changed at the provider: sessions updated")
                }
                Err(e) => {
                    tracing::warn!(user = %user, error = %e, "roles of other sessions not updated")
                }
            }
        }
    }

    /// Deletes every session the request's cookies name (a client may send the cookie more
    /// than once; each well-formed one is ended); returns their records.
    pub async fn revoke_presented(&self, req: &ApiRequest) -> Result<Vec<SessionRecord>, ApiError> {
        let mut ended = Vec::new();
        for value in cookie::find_all(req.cookies(), &self.contract.cookie_name) {
            let Some(token) = SessionToken::parse(value) else {
                continue;
            };
            let id = token.id();
            if let Some(record) = self.store.lookup(&id).await? {
                self.store.delete(&id, &record.user_id).await?;
                ended.push(record);
            }
        }
        Ok(ended)
    }

    /// The token of the one session cookie the request presents (none for zero, several or
    /// a malformed one).
    fn presented_token(&self, req: &ApiRequest) -> Option<SessionToken> {
        match cookie::find(req.cookies(), &self.contract.cookie_name) {
            CookieLookup::One(value) => SessionToken::parse(value),
            _ => None,
        }
    }

    /// The request's own session: exactly one well-formed cookie naming a live session, from
    /// the device that signed in (the same checks the gateway makes). Its id and record.
    pub async fn current(&self, req: &ApiRequest) -> Result<(String, SessionRecord), ApiError> {
        let token = self.presented_token(req).ok_or(ApiError::Unauthenticated)?;
        let id = token.id();
        let record = self
            .store
            .lookup(&id)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        let (idle, absolute) = (
            self.contract.idle_timeout.0,
            self.contract.absolute_timeout.0,
        );
        // A session put aside by a gateway (`on_fingerprint_mismatch = "reauth"`) is refused
        // here too, from every device, until a sign-in re-binds it.
        if record
            .expiry(authflow_shared::now_ms(), idle, absolute)
            .is_some()
            || record.held_since.is_some()
            || !fingerprint::matches(&record.fingerprint, &self.client_fingerprint(req))
        {
            return Err(ApiError::Unauthenticated);
        }
        Ok((id, record))
    }

    /// Every live session of `user_id`, newest first; `current` is marked.
    pub async fn list(
        &self,
        user_id: &str,
        current: Option<&str>,
    ) -> Result<Vec<SessionView>, ApiError> {
        let mut views: Vec<SessionView> = self
            .store
            .list_user(user_id)
            .await?
            .iter()
            .map(|(id, r)| SessionView::new(id, r, current))
            .collect();
        views.sort_by_key(|v| std::cmp::Reverse(v.created_at));
        Ok(views)
    }

    /// Ends the session of `user_id` named by `handle`; `false` when it has none such.
    pub async fn end(&self, user_id: &str, handle: &str) -> Result<bool, ApiError> {
        for (id, _) in self.store.list_user(user_id).await? {
            if fingerprint::matches(&public_handle(&id), handle) {
                self.store.delete(&id, user_id).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Ends every session of `user_id` that provider `idp` started; how many, and whether
    /// `current` was one of them.
    pub async fn end_by_provider(
        &self,
        user_id: &str,
        idp: &str,
        current: &str,
    ) -> Result<(usize, bool), ApiError> {
        let mut ended = 0;
        let mut this_one = false;
        for (id, record) in self.store.list_user(user_id).await? {
            if record.claims.idp.as_deref() == Some(idp) {
                self.store.delete(&id, user_id).await?;
                ended += 1;
                this_one |= id == current;
            }
        }
        Ok((ended, this_one))
    }

    /// Ends every session of `user_id` but `keep`, atomically and with the revoke mark (a
    /// sign-in that checked the password before this cannot create a session after it);
    /// returns how many.
    pub async fn end_others(&self, user_id: &str, keep: &str) -> Result<usize, ApiError> {
        Ok(self.store.revoke_user(user_id, Some(keep)).await?)
    }

    /// Beyond `max_per_user` sessions, the oldest end. A failure here leaves the new session
    /// standing (it is logged): the cap is a limit on clutter, not a security boundary.
    async fn enforce_cap(&self, user_id: &str) {
        if self.max_per_user == 0 {
            return;
        }
        let result = async {
            let mut all = self.store.list_user(user_id).await?;
            if all.len() <= self.max_per_user {
                return Ok::<usize, StoreError>(0);
            }
            all.sort_by_key(|(_, r)| r.created_at);
            let extra = all.len() - self.max_per_user;
            for (id, _) in &all[..extra] {
                self.store.delete(id, user_id).await?;
            }
            Ok(extra)
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => {
                crate::metrics::revoked(crate::metrics::Revocation::CapEvicted, n);
                tracing::info!(user = %user_id, evicted = n, "oldest sessions ended: over max_sessions_per_user")
            }
            Err(e) => {
                tracing::warn!(user = %user_id, error = %e, "max_sessions_per_user not enforced")
            }
        }
    }

    /// Ends every session of `user_id`; returns how many there were.
    pub async fn revoke_user(&self, user_id: &str) -> Result<usize, ApiError> {
        Ok(self.store.revoke_user(user_id, None).await?)
    }

    /// The gateway's fingerprint header when the request comes from a trusted proxy (the
    /// gateway sees the real client); otherwise computed here, with the same function, from
    /// what this service sees.
    /// The device fingerprint of `req`'s client (what a session is bound to).
    pub fn fingerprint_of(&self, req: &ApiRequest) -> String {
        self.client_fingerprint(req)
    }

    fn client_fingerprint(&self, req: &ApiRequest) -> String {
        let peer = client_ip::canonical(req.peer.ip());
        if client_ip::is_trusted(peer, &self.trusted_proxies) {
            if let Some(fp) = req
                .headers
                .get(FINGERPRINT_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return fp.to_ascii_lowercase();
                }
            }
        }
        self.contract
            .fingerprint
            .compute(self.client_ip(req), &req.headers)
    }

    /// The client's address: the peer, or `X-Forwarded-For` from a trusted proxy (the
    /// gateway, which resolves it from its own trusted proxies and sets it).
    pub fn client_ip(&self, req: &ApiRequest) -> IpAddr {
        let peer = client_ip::canonical(req.peer.ip());
        let xff = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        client_ip::resolve(peer, xff, &self.trusted_proxies)
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
