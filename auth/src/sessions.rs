//! Issuing and ending sessions: a new session bound to the client's device fingerprint, and
//! the revocation of whatever session a request presents. The record format and keys are the
//! shared crate's; this module decides which fingerprint to trust.

use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::users::SignedIn;
use authflow_shared::client_ip;
use authflow_shared::contract::SessionContract;
use authflow_shared::cookie::{self, CookieSpec};
use authflow_shared::fingerprint::FINGERPRINT_HEADER;
use authflow_shared::session::SessionRecord;
use authflow_shared::store::{SessionStore, StoreError};
use authflow_shared::token::SessionToken;
use ipnet::IpNet;
use std::sync::Arc;
use std::time::Duration;

pub struct Sessions {
    pub store: Arc<dyn SessionStore>,
    contract: SessionContract,
    trusted_proxies: Vec<IpNet>,
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
        }
    }

    pub fn cookie(&self) -> CookieSpec {
        self.contract.cookie()
    }

    /// The cookie's lifetime: the absolute timeout.
    pub fn cookie_max_age(&self) -> Duration {
        self.contract.absolute_timeout.0
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
        let token = SessionToken::for_user(&who.user_id);
        let (idle, absolute) = (
            self.contract.idle_timeout.0,
            self.contract.absolute_timeout.0,
        );
        let mut record = SessionRecord::new(
            who.user_id,
            Some(who.email),
            self.client_fingerprint(req),
            authflow_shared::now_ms(),
            absolute,
        );
        record.provider_data = who.provider_data;
        match self
            .store
            .create(&token.id(), &record, idle.min(absolute), began_us)
            .await
        {
            Ok(()) => Ok((token, record)),
            Err(StoreError::Revoked) => {
                tracing::warn!(user = %record.user_id, "sign-in raced a password reset: refused");
                Err(ApiError::InvalidCredentials)
            }
            Err(e) => Err(e.into()),
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

    /// Ends every session of `user_id`; returns how many there were.
    pub async fn revoke_user(&self, user_id: &str) -> Result<usize, ApiError> {
        Ok(self.store.revoke_user(user_id).await?)
    }

    /// The gateway's fingerprint header when the request comes from a trusted proxy (the
    /// gateway sees the real client); otherwise computed here, with the same function, from
    /// what this service sees.
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
        let xff = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let ip = client_ip::resolve(peer, xff, &self.trusted_proxies);
        self.contract.fingerprint.compute(ip, &req.headers)
    }
}
