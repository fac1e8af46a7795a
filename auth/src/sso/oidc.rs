//! OpenID Connect relying party for one provider: discovery, the authorization URL, the code
//! exchange and the ID token's checks (OpenID Connect Core §3.1.3.7).
//!
//! The checks are ours on purpose, with `jsonwebtoken` doing the signature, `exp`, `iss` and
//! `aud`: the algorithm comes from `allowed_algs`, never from the provider's advertised list
//! or the token's header alone; the keys are refetched when a token names an unknown `kid`
//! (a rotation), at most once a minute; Microsoft's multi-tenant issuers are checked against
//! the token's own `tid` and the allowed tenants, which a fixed-issuer library refuses.

use super::config::{Preset, ProviderConfig};
use super::{ProviderUser, SsoError};
use crate::users::roles::RoleMapping;
use authflow_shared::fingerprint;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How often at most an unknown `kid` makes the keys be fetched again.
const REFETCH_EVERY: Duration = Duration::from_secs(60);

/// The provider's discovery document, the parts used.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// RFC 9207: the provider puts `iss` in its authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// What is cached about the provider: its metadata and keys, and when the keys were last
/// refetched for an unknown `kid`.
#[derive(Default)]
struct Cached {
    meta: Option<Metadata>,
    keys: Option<JwkSet>,
    refetched: Option<Instant>,
}

pub struct Oidc {
    cfg: ProviderConfig,
    http: reqwest::Client,
    cached: Mutex<Cached>,
}

/// The claims of an ID token that are read; the rest stay in `extra` (for `roles_claim`).
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub aud: Value,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<Value>,
    /// Google Workspace: the hosted domain.
    #[serde(default)]
    pub hd: Option<String>,
    /// Microsoft: tenant and object id.
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub oid: Option<String>,
    /// How the provider signed the person in (RFC 8176), when it says.
    #[serde(default)]
    pub amr: Vec<String>,
    /// Microsoft: the email's domain is verified by the tenant.
    #[serde(default)]
    pub xms_edov: Option<Value>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl Oidc {
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> Oidc {
        Oidc {
            cfg: cfg.clone(),
            http,
            cached: Mutex::new(Cached::default()),
        }
    }

    /// The discovery document, fetched once (and again after a failure).
    pub async fn metadata(&self) -> Result<Metadata, SsoError> {
        let mut cached = self.cached.lock().await;
        if let Some(m) = &cached.meta {
            return Ok(m.clone());
        }
        let meta = self.discover().await?;
        cached.meta = Some(meta.clone());
        Ok(meta)
    }

    async fn discover(&self) -> Result<Metadata, SsoError> {
        let issuer = self
            .cfg
            .issuer()
            .ok_or_else(|| SsoError::Unavailable("no issuer".into()))?;
        let url = format!("{issuer}/.well-known/openid-configuration");
        let meta: Metadata = get_json(&self.http, &url).await?;
        // Microsoft's multi-tenant documents name the issuer `.../{tenantid}/v2.0`; the
        // token's own tenant is checked instead (see `check_issuer`).
        if !self.cfg.multi_tenant() && meta.issuer.trim_end_matches('/') != issuer {
            return Err(SsoError::Unavailable(format!(
                "discovery names issuer {:?}, not {issuer:?}",
                meta.issuer
            )));
        }
        Ok(meta)
    }

    /// Where to send the browser (authorization code flow, PKCE S256).
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<String, SsoError> {
        let meta = self.metadata().await?;
        let mut url = url::Url::parse(&meta.authorization_endpoint)
            .map_err(|e| SsoError::Unavailable(format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.cfg.scopes().join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// RFC 9207: the callback's `iss` must be the provider's, and is required when the
    /// provider says it sends one (a mix-up sends another provider's code here).
    pub async fn check_iss_param(&self, iss: Option<&str>) -> Result<(), SsoError> {
        let meta = self.metadata().await?;
        match iss {
            // RFC 9207 §2.4: simple string comparison.
            Some(iss) if iss == meta.issuer => Ok(()),
            Some(iss)
                if self.cfg.multi_tenant()
                    && iss.starts_with("https://login.microsoftonline.com/") =>
            {
                Ok(())
            }
            Some(_) => Err(SsoError::State("the iss of the callback is another issuer")),
            None if meta.authorization_response_iss_parameter_supported => {
                Err(SsoError::State("the callback lacks iss"))
            }
            None => Ok(()),
        }
    }

    /// Exchanges `code` and checks the ID token it brings; who signed in.
    pub async fn user(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<ProviderUser, SsoError> {
        let id_token = self.exchange(code, redirect_uri, code_verifier).await?;
        let claims = self.verify(&id_token).await?;
        identity(&self.cfg, &claims, nonce)
    }

    /// The token request, authenticated with `client_secret_basic`.
    async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<String, SsoError> {
        let meta = self.metadata().await?;
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let resp = self
            .http
            .post(&meta.token_endpoint)
            .basic_auth(
                enc(&self.cfg.client_id),
                Some(enc(self.cfg.secret.expose())),
            )
            .header("accept", "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ])
            .send()
            .await
            .map_err(|e| SsoError::Unavailable(format!("token endpoint: {}", e.without_url())))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|_| {
            SsoError::Unavailable(format!("token endpoint answered {status} without JSON"))
        })?;
        if let Some(error) = body.get("error").and_then(Value::as_str) {
            return Err(SsoError::Exchange(error.chars().take(64).collect()));
        }
        if !status.is_success() {
            return Err(SsoError::Exchange(format!("status {status}")));
        }
        body.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SsoError::Exchange("no id_token".into()))
    }

    /// Signature (by a key of the provider's, with an allowed algorithm), `exp`, `iss`, `aud`.
    pub async fn verify(&self, id_token: &str) -> Result<IdClaims, SsoError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| SsoError::Token(format!("unreadable header: {e}")))?;
        let alg = header.alg;
        if !self.allowed(alg) {
            return Err(SsoError::Token(format!("algorithm {alg:?} is not allowed")));
        }
        let jwk = self.key(header.kid.as_deref(), alg).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| SsoError::Token(format!("key: {e}")))?;
        let mut v = Validation::new(alg);
        v.set_audience(&[&self.cfg.client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 60;
        let meta = self.metadata().await?;
        if !self.cfg.multi_tenant() {
            v.set_issuer(&[meta.issuer.as_str()]);
        }
        let data = jsonwebtoken::decode::<IdClaims>(id_token, &key, &v)
            .map_err(|e| SsoError::Token(format!("{e}")))?;
        Ok(data.claims)
    }

    fn allowed(&self, alg: Algorithm) -> bool {
        self.cfg
            .allowed_algs
            .iter()
            .any(|a| Algorithm::from_str(a).is_ok_and(|x| x == alg))
            && !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// The provider's key `kid` for `alg`; an unknown `kid` refetches the keys, at most once
    /// a minute.
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Jwk, SsoError> {
        let mut cached = self.cached.lock().await;
        if cached.keys.is_none() {
            let set = self.fetch_keys(&mut cached).await?;
            cached.keys = Some(set);
        }
        if let Some(k) = cached.keys.as_ref().and_then(|set| pick(set, kid, alg)) {
            return Ok(k);
        }
        if cached
            .refetched
            .is_some_and(|t| t.elapsed() < REFETCH_EVERY)
        {
            return Err(SsoError::Token("signed by an unknown key".into()));
        }
        cached.refetched = Some(Instant::now());
        let set = self.fetch_keys(&mut cached).await?;
        let found = pick(&set, kid, alg);
        cached.keys = Some(set);
        found.ok_or_else(|| SsoError::Token("signed by an unknown key".into()))
    }

    /// Fetches the JWKS named by the metadata (the caller holds the cache).
    async fn fetch_keys(&self, cached: &mut Cached) -> Result<JwkSet, SsoError> {
        let uri = match &cached.meta {
            Some(m) => m.jwks_uri.clone(),
            None => {
                let m = self.discover().await?;
                let uri = m.jwks_uri.clone();
                cached.meta = Some(m);
                uri
            }
        };
        get_json(&self.http, &uri).await
    }
}

/// The key for `kid` (or, when the token names none, the one key that fits `alg`).
fn pick(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None => {
            let fits: Vec<&Jwk> = set
                .keys
                .iter()
                .filter(|k| DecodingKey::from_jwk(k).is_ok())
                .filter(|k| {
                    k.common
                        .key_algorithm
                        .is_none_or(|a| a.to_string() == format!("{alg:?}"))
                })
                .collect();
            (fits.len() == 1).then(|| fits[0].clone())
        }
    }
}

async fn get_json<T: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, SsoError> {
    let resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| SsoError::Unavailable(format!("{url}: {}", e.without_url())))?;
    if !resp.status().is_success() {
        return Err(SsoError::Unavailable(format!("{url}: {}", resp.status())));
    }
    resp.json()
        .await
        .map_err(|e| SsoError::Unavailable(format!("{url}: {e}")))
}

/// Who the checked claims name, after the checks that are not the signature's: `azp`, the
/// nonce, Microsoft's tenant, the allowed domains.
pub fn identity(cfg: &ProviderConfig, c: &IdClaims, nonce: &str) -> Result<ProviderUser, SsoError> {
    let audiences = match &c.aud {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    match &c.azp {
        Some(azp) if azp != &cfg.client_id => {
            return Err(SsoError::Token("azp is another client".into()))
        }
        None if audiences > 1 => {
            return Err(SsoError::Token("several audiences and no azp".into()))
        }
        _ => {}
    }
    match &c.nonce {
        Some(n) if fingerprint::matches(n, nonce) => {}
        _ => return Err(SsoError::Token("nonce does not match this sign-in".into())),
    }
    let (subject, email_verified) = match cfg.preset {
        Preset::Microsoft => microsoft(cfg, c)?,
        _ => (c.sub.clone(), truthy(c.email_verified.as_ref())),
    };
    let email = c
        .email
        .as_ref()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty());
    check_domain(cfg, c, email.as_deref(), email_verified)?;
    Ok(ProviderUser {
        subject,
        email,
        email_verified,
        groups: groups(cfg, c),
        upstream_mfa: c
            .amr
            .iter()
            .any(|m| authflow_shared::session::SECOND_FACTORS.contains(&m.as_str())),
    })
}

/// Microsoft: the subject is `tid/oid` (an email or `sub` per app is no stable key, and
/// Entra's `email` is unverified unless `xms_edov`); a multi-tenant issuer must be the
/// token's own tenant's, and that tenant allowed.
fn microsoft(cfg: &ProviderConfig, c: &IdClaims) -> Result<(String, bool), SsoError> {
    let (Some(tid), Some(oid)) = (c.tid.as_deref(), c.oid.as_deref()) else {
        return Err(SsoError::Token("no tid and oid".into()));
    };
    if cfg.multi_tenant() {
        if c.iss != format!("https://login.microsoftonline.com/{tid}/v2.0") {
            return Err(SsoError::Token("iss is not the token's tenant's".into()));
        }
        if !cfg
            .allowed_tenants
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tid))
        {
            return Err(SsoError::NotAllowed(format!("tenant {tid} is not allowed")));
        }
    } else if !tid.eq_ignore_ascii_case(cfg.tenant()) && looks_like_guid(cfg.tenant()) {
        return Err(SsoError::Token("tid is another tenant".into()));
    }
    Ok((format!("{tid}/{oid}"), truthy(c.xms_edov.as_ref())))
}

fn looks_like_guid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// `allowed_domains`: Google's `hd` (the Workspace domain; the address's suffix says
/// nothing about who manages it), else the verified address's domain.
fn check_domain(
    cfg: &ProviderConfig,
    c: &IdClaims,
    email: Option<&str>,
    verified: bool,
) -> Result<(), SsoError> {
    if cfg.allowed_domains.is_empty() {
        return Ok(());
    }
    let domain = match cfg.preset {
        Preset::Google => c.hd.clone(),
        _ => email
            .filter(|_| verified)
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_owned()),
    };
    match domain {
        Some(d)
            if cfg
                .allowed_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&d)) =>
        {
            Ok(())
        }
        Some(d) => Err(SsoError::NotAllowed(format!("domain {d} is not allowed"))),
        None => Err(SsoError::NotAllowed("no verified domain".into())),
    }
}

/// `email_verified` as a boolean (some providers send the string `"true"`).
fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
}

/// The values of `roles_claim` (for `role_map`).
fn groups(cfg: &ProviderConfig, c: &IdClaims) -> Vec<String> {
    RoleMapping::of(cfg).values(&Value::Object(c.extra.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(toml_text: &str) -> ProviderConfig {
        toml::from_str(toml_text).expect("provider")
    }

    fn claims(v: Value) -> IdClaims {
        serde_json::from_value(v).expect("claims")
    }

    const TID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

    fn entra() -> ProviderConfig {
        cfg(&format!(
            "id = \"entra\"\npreset = \"microsoft\"\nclient_id = \"app\"\nallowed_tenants = [\"{TID}\"]\n"
        ))
    }

    fn entra_claims(tid: &str, iss_tid: &str) -> Value {
        json!({"iss": format!("https://login.microsoftonline.com/{iss_tid}/v2.0"), "sub": "pairwise",
               "aud": "app", "nonce": "n", "tid": tid, "oid": "00000000-0000-0000-0000-000000000042",
               "email": "Ann@Corp.Example"})
    }

    #[test]
    fn microsoft_subjects_are_tenant_and_object_never_the_email() {
        let u = identity(&entra(), &claims(entra_claims(TID, TID)), "n").expect("ok");
        assert_eq!(
            u.subject,
            format!("{TID}/00000000-0000-0000-0000-000000000042")
        );
        // Entra's email is unverified unless the tenant vouches for its domain.
        assert!(!u.email_verified);
        let mut c = entra_claims(TID, TID);
        c["xms_edov"] = json!(true);
        assert!(
            identity(&entra(), &claims(c), "n")
                .expect("ok")
                .email_verified
        );
    }

    #[test]
    fn microsoft_multi_tenant_checks_iss_against_the_tokens_tenant() {
        let other = "11111111-2222-3333-4444-555555555555";
        // Another tenant, consistently named: not allowed.
        let e = identity(&entra(), &claims(entra_claims(other, other)), "n").expect_err("tenant");
        assert!(matches!(e, SsoError::NotAllowed(_)), "{e}");
        // An allowed tid in a token issued by another tenant: a forgery.
        let e = identity(&entra(), &claims(entra_claims(TID, other)), "n").expect_err("iss");
        assert!(matches!(e, SsoError::Token(_)), "{e}");
    }

    #[test]
    fn google_domains_are_the_hd_claim_not_the_address() {
        let g = cfg("id = \"google\"\npreset = \"google\"\nclient_id = \"app\"\nallowed_domains = [\"corp.example\"]\n");
        let base = json!({"iss": "https://accounts.google.com", "sub": "1", "aud": "app", "nonce": "n",
                          "email": "ann@corp.example", "email_verified": true});
        // A gmail-style account whose address merely ends in the domain: no hd, refused.
        let e = identity(&g, &claims(base.clone()), "n").expect_err("no hd");
        assert!(matches!(e, SsoError::NotAllowed(_)));
        let mut with_hd = base;
        with_hd["hd"] = json!("corp.example");
        assert!(identity(&g, &claims(with_hd), "n").is_ok());
    }

    #[test]
    fn azp_and_audiences_follow_core_3_1_3_7() {
        let p = cfg("id = \"x\"\npreset = \"generic\"\nclient_id = \"app\"\nissuer = \"https://i.example\"\n");
        let base =
            json!({"iss": "https://i.example", "sub": "1", "nonce": "n", "aud": ["app", "other"]});
        let e = identity(&p, &claims(base.clone()), "n").expect_err("no azp");
        assert!(matches!(e, SsoError::Token(_)));
        let mut c = base.clone();
        c["azp"] = json!("other");
        assert!(identity(&p, &claims(c), "n").is_err());
        let mut c = base;
        c["azp"] = json!("app");
        assert!(identity(&p, &claims(c), "n").is_ok());
    }

    #[test]
    fn email_verified_as_a_string_counts_and_groups_are_read() {
        let p = cfg("id = \"x\"\npreset = \"generic\"\nclient_id = \"app\"\nissuer = \"https://i.example\"\nroles_claim = \"groups\"\nrole_map = { eng = \"admin\" }\n");
        let c = json!({"iss": "https://i.example", "sub": "1", "aud": "app", "nonce": "n",
                       "email": "a@b.example", "email_verified": "true", "groups": ["eng", "sales"]});
        let u = identity(&p, &claims(c), "n").expect("ok");
        assert!(u.email_verified);
        assert_eq!(u.groups, vec!["eng", "sales"]);
        assert_eq!(RoleMapping::of(&p).map(&u.groups), vec!["admin"]);
    }

    #[test]
    fn only_the_configured_algorithms_are_allowed() {
        let mut p = cfg("id = \"x\"\npreset = \"generic\"\nclient_id = \"app\"\nissuer = \"https://i.example\"\n");
        let o = Oidc::new(&p, reqwest::Client::new());
        assert!(o.allowed(Algorithm::RS256));
        assert!(!o.allowed(Algorithm::ES256));
        assert!(!o.allowed(Algorithm::HS256));
        p.allowed_algs = vec!["ES256".into(), "HS256".into()];
        let o = Oidc::new(&p, reqwest::Client::new());
        assert!(o.allowed(Algorithm::ES256));
        assert!(!o.allowed(Algorithm::HS256), "HS* never, even if listed");
    }
}
