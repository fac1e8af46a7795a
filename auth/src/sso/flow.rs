//! The configured providers and the two legs of a provider sign-in: the start, which
//! remembers the sign-in ([`super::state`]) and sends the browser to the provider, and the
//! callback, which checks everything the provider sent back and says who signed in.

use super::config::{IdentityConfig, ProviderConfig};
use super::github::GitHub;
use super::oidc::Oidc;
use super::state::{self, CookieRules, Pending};
use super::{ProviderUser, SsoError};
use crate::http::ApiRequest;
use authflow_shared::store::ShortLived;
use std::sync::Arc;

/// One configured provider and its client.
pub struct Provider {
    pub cfg: ProviderConfig,
    client: Client,
}

/// Boxed: an OIDC client with its caches is several times the size of a GitHub one.
enum Client {
    Oidc(Box<Oidc>),
    GitHub(GitHub),
}

/// Every configured provider, and what their sign-ins share.
pub struct Sso {
    providers: Vec<Provider>,
    /// `public_url`, without a trailing slash: redirect URIs start with it.
    public_url: String,
    states: Arc<dyn ShortLived>,
    pub cookies: CookieRules,
}

/// A callback that passed every check.
pub struct Finished {
    pub user: ProviderUser,
    pub next: String,
}

impl Sso {
    pub fn new(
        cfg: &IdentityConfig,
        public_url: &str,
        states: Arc<dyn ShortLived>,
        cookies: CookieRules,
    ) -> Sso {
        let http = super::http_client();
        let providers = cfg
            .providers
            .iter()
            .map(|p| Provider {
                cfg: p.clone(),
                client: if p.is_oidc() {
                    Client::Oidc(Box::new(Oidc::new(p, http.clone())))
                } else {
                    Client::GitHub(GitHub::new(p, http.clone()))
                },
            })
            .collect();
        Sso {
            providers,
            public_url: public_url.trim_end_matches('/').to_owned(),
            states,
            cookies,
        }
    }

    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.cfg.id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// (id, button label) of each provider, in the config's order.
    pub fn buttons(&self) -> Vec<(String, String)> {
        self.providers
            .iter()
            .map(|p| (p.cfg.id.clone(), p.cfg.display_name().to_owned()))
            .collect()
    }

    /// `<public_url>/auth/sso/<id>/callback`: what to register at the provider.
    pub fn redirect_uri(&self, id: &str) -> String {
        format!("{}/auth/sso/{id}/callback", self.public_url)
    }

    /// Begins a sign-in at `p` returning to `next` (a local path): the provider's URL and
    /// the cookie that binds the sign-in to this browser.
    pub async fn start(&self, p: &Provider, next: &str) -> Result<(String, String), SsoError> {
        let begun = state::begin(self.states.as_ref(), &self.cookies, &p.cfg.id, next).await?;
        let redirect_uri = self.redirect_uri(&p.cfg.id);
        let url = match &p.client {
            Client::Oidc(o) => {
                o.authorization_url(
                    &redirect_uri,
                    &begun.state,
                    &begun.nonce,
                    &begun.code_challenge,
                )
                .await?
            }
            Client::GitHub(g) => {
                g.authorization_url(&redirect_uri, &begun.state, &begun.code_challenge)
            }
        };
        Ok((url, begun.cookie))
    }

    /// Checks a callback at `p`: the state (this browser's, unused, begun at `p`), the
    /// provider's error if it sent one, RFC 9207 `iss`, then the code exchange and the
    /// identity. The returned `Set-Cookie` drops the sign-in's cookie, whatever happened.
    pub async fn finish(
        &self,
        p: &Provider,
        req: &ApiRequest,
    ) -> (Result<Finished, SsoError>, Option<String>) {
        let state_param = req.query_param("state");
        let clear = state_param.as_deref().map(|s| self.cookies.clear(s));
        let result = self.check(p, req, state_param.as_deref()).await;
        (result, clear)
    }

    async fn check(
        &self,
        p: &Provider,
        req: &ApiRequest,
        state_param: Option<&str>,
    ) -> Result<Finished, SsoError> {
        let pending: Pending = state::finish(
            self.states.as_ref(),
            &self.cookies,
            state_param,
            req.cookies(),
            &p.cfg.id,
        )
        .await?;
        if let Some(error) = req.query_param("error") {
            return Err(SsoError::Provider(error.chars().take(64).collect()));
        }
        let code = req
            .query_param("code")
            .filter(|c| !c.is_empty() && c.len() <= 2048)
            .ok_or(SsoError::Exchange("no code".into()))?;
        let redirect_uri = self.redirect_uri(&p.cfg.id);
        let user = match &p.client {
            Client::Oidc(o) => {
                o.check_iss_param(req.query_param("iss").as_deref()).await?;
                o.user(&code, &redirect_uri, &pending.code_verifier, &pending.nonce)
                    .await?
            }
            Client::GitHub(g) => g.user(&code, &redirect_uri, &pending.code_verifier).await?,
        };
        Ok(Finished {
            user,
            next: pending.next,
        })
    }
}
