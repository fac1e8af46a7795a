//! `[identity]` in `auth.toml`: whether passwords are offered, and the external providers
//! (`[[identity.providers]]`). Everything a provider table says is checked here, where it
//! enters: an `http://` issuer off loopback, `none` or `HS*` among the algorithms, an id that
//! cannot go into a URL, a client secret written into the file.

use authflow_shared::config::{EnvReader, Problems, Secret, Validate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[identity]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Password sign-in, sign-up and reset; `false` for deployments that sign in only through
    /// a provider (the form is hidden and the password endpoints answer 404).
    pub password: bool,
    pub providers: Vec<ProviderConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            password: true,
            providers: Vec::new(),
        }
    }
}

/// What kind of provider a table describes; the presets fill in issuer, scopes and the
/// claims to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Any OpenID Connect provider, by its `issuer`.
    Generic,
    Google,
    /// Microsoft Entra ID (v2.0 endpoints).
    Microsoft,
    /// GitHub OAuth apps (OAuth 2, not OpenID Connect).
    Github,
}

/// One `[[identity.providers]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `[a-z0-9-]+`; in the URLs (`/auth/sso/<id>`) and in every linked identity, so never
    /// reused for another provider.
    pub id: String,
    pub preset: Preset,
    pub client_id: String,
    /// Only to say where it belongs: a secret in the file is refused.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<Secret>,
    /// From `AUTHFLOW_IDP_<ID>_CLIENT_SECRET` (or `_FILE`).
    #[serde(skip)]
    pub secret: Secret,
    /// The button label; the id when unset.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The preset's when unset.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// OpenID Connect: the issuer (discovery at `<issuer>/.well-known/openid-configuration`).
    /// Google and Microsoft fill it in; set it only for another cloud or a test.
    #[serde(default)]
    pub issuer: Option<String>,
    /// ID token algorithms accepted; never the provider's advertised list as is.
    #[serde(default = "default_algs")]
    pub allowed_algs: Vec<String>,
    /// Microsoft: a tenant id, or `organizations` / `common` (then `allowed_tenants`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Microsoft multi-tenant: the tenant ids (`tid`) let in.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// GitHub: the URLs, for GitHub Enterprise (and the tests).
    #[serde(default)]
    pub authorize_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
    /// GitHub: organizations (logins) one of which the person must belong to.
    #[serde(default)]
    pub allowed_orgs: Vec<String>,
    /// Email domains let in (Google: the `hd` claim, not the address's suffix).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// `false` treats every address from this provider as unverified.
    #[serde(default = "yes")]
    pub trust_email_verified: bool,
    /// Whether a first sign-in may create an account.
    #[serde(default = "yes")]
    pub create_accounts: bool,
    /// Count the provider's own second factor (its ID token's `amr` holding `mfa`, `otp`,
    /// `hwk` or `swk`) as the session's, instead of asking for the account's own.
    #[serde(default)]
    pub trust_upstream_mfa: bool,
    /// A claim holding the person's groups (`groups`, or a dotted path such as
    /// `realm_access.roles`), read at every sign-in. GitHub: the organizations.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Provider group -> AuthFlow role; unmapped groups are dropped.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
}

fn default_algs() -> Vec<String> {
    vec!["RS256".into()]
}

fn yes() -> bool {
    true
}

/// Algorithms an ID token may be signed with: asymmetric only. `HS*` would make the client
/// secret a signing key; `none` is no signature.
pub const ASYMMETRIC_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Microsoft's tenant names that stand for many tenants.
const MULTI_TENANT: [&str; 3] = ["common", "organizations", "consumers"];

impl ProviderConfig {
    /// `AUTHFLOW_IDP_<ID>_CLIENT_SECRET`: the id upper-cased, `-` as `_`.
    pub fn secret_env(&self) -> String {
        format!(
            "AUTHFLOW_IDP_{}_CLIENT_SECRET",
            self.id.to_ascii_uppercase().replace('-', "_")
        )
    }

    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.id)
    }

    /// Whether this is OpenID Connect (every preset but GitHub).
    pub fn is_oidc(&self) -> bool {
        self.preset != Preset::Github
    }

    /// Microsoft's tenant, `organizations` when unset.
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or("organizations")
    }

    /// Whether `tenant` names many tenants, so `iss` is checked against `tid`.
    pub fn multi_tenant(&self) -> bool {
        self.preset == Preset::Microsoft && MULTI_TENANT.contains(&self.tenant())
    }

    /// The issuer discovery starts from.
    pub fn issuer(&self) -> Option<String> {
        if let Some(i) = &self.issuer {
            return Some(i.trim_end_matches('/').to_owned());
        }
        match self.preset {
            Preset::Google => Some("https://accounts.google.com".into()),
            Preset::Microsoft => Some(format!(
                "https://login.microsoftonline.com/{}/v2.0",
                self.tenant()
            )),
            Preset::Generic | Preset::Github => None,
        }
    }

    /// The scopes asked for.
    pub fn scopes(&self) -> Vec<String> {
        if let Some(s) = &self.scopes {
            return s.clone();
        }
        match self.preset {
            Preset::Github if self.allowed_orgs.is_empty() => {
                vec!["read:user".into(), "user:email".into()]
            }
            Preset::Github => vec!["read:user".into(), "user:email".into(), "read:org".into()],
            _ => vec!["openid".into(), "email".into(), "profile".into()],
        }
    }

    /// GitHub's three URLs, github.com's when not overridden.
    pub fn github_urls(&self) -> (String, String, String) {
        (
            self.authorize_url
                .clone()
                .unwrap_or_else(|| "https://github.com/login/oauth/authorize".into()),
            self.token_url
                .clone()
                .unwrap_or_else(|| "https://github.com/login/oauth/access_token".into()),
            self.api_url
                .clone()
                .unwrap_or_else(|| "https://api.github.com".into())
                .trim_end_matches('/')
                .to_owned(),
        )
    }
}

impl IdentityConfig {
    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Reads each provider's client secret from its environment variable.
    pub fn read_secrets(&mut self, read: &EnvReader<'_>) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (i, p) in self.providers.iter_mut().enumerate() {
            match read(&p.secret_env()) {
                Ok(Some(v)) => p.secret = Secret::new(v),
                Ok(None) => {}
                Err(reason) => {
                    problems.push((format!("identity.providers[{i}].client_id"), reason))
                }
            }
        }
        problems
    }
}

impl Validate for IdentityConfig {
    fn validate(&self, p: &mut Problems) {
        let mut seen = std::collections::HashSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            if !seen.insert(provider.id.as_str()) {
                p.add(
                    format!("providers[{i}].id"),
                    format!("{:?} is used twice", provider.id),
                );
            }
            provider.problems(&format!("providers[{i}]"), p);
        }
    }
}

impl ProviderConfig {
    fn problems(&self, at: &str, p: &mut Problems) {
        let key = |k: &str| format!("{at}.{k}");
        if self.id.is_empty()
            || self.id.len() > 40
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            p.add(key("id"), "must be 1-40 of a-z, 0-9 and -");
        }
        if self.client_id.trim().is_empty() {
            p.add(key("client_id"), "must not be empty");
        }
        if self.client_secret.is_some() {
            p.add(
                key("client_secret"),
                format!(
                    "secrets never go in the file: set {} (or {}_FILE)",
                    self.secret_env(),
                    self.secret_env()
                ),
            );
        } else if self.secret.is_empty() {
            p.add(
                key("client_id"),
                format!("the client secret is missing: set {}", self.secret_env()),
            );
        }
        for alg in &self.allowed_algs {
            if !ASYMMETRIC_ALGS.contains(&alg.as_str()) {
                p.add(
                    key("allowed_algs"),
                    format!(
                        "{alg:?} is refused: only asymmetric algorithms ({})",
                        ASYMMETRIC_ALGS.join(", ")
                    ),
                );
            }
        }
        if self.allowed_algs.is_empty() {
            p.add(key("allowed_algs"), "must name at least one algorithm");
        }
        match self.preset {
            Preset::Generic if self.issuer.is_none() => {
                p.add(key("issuer"), "a generic provider needs its issuer")
            }
            Preset::Microsoft if self.multi_tenant() && self.allowed_tenants.is_empty() => p.add(
                key("allowed_tenants"),
                format!(
                    "tenant {:?} lets any tenant in: list the tenant ids allowed",
                    self.tenant()
                ),
            ),
            Preset::Github if self.issuer.is_some() => p.add(
                key("issuer"),
                "GitHub is OAuth 2, not OpenID Connect: set authorize_url, token_url and api_url",
            ),
            _ => {}
        }
        if let Some(issuer) = self.issuer() {
            check_url(&issuer, &key("issuer"), p);
        }
        if self.preset == Preset::Github {
            let (a, t, api) = self.github_urls();
            check_url(&a, &key("authorize_url"), p);
            check_url(&t, &key("token_url"), p);
            check_url(&api, &key("api_url"), p);
        }
        for (from, to) in &self.role_map {
            if let Err(e) = authflow_shared::roles::validate(to) {
                p.add(key("role_map"), format!("{from:?} -> {to:?}: {e}"));
            }
        }
        if self.is_oidc() && !self.scopes().iter().any(|s| s == "openid") {
            p.add(key("scopes"), "OpenID Connect needs the openid scope");
        }
    }
}

/// An `https://` URL, or `http://` on a loopback host only (a test or a local provider): a
/// plain-text issuer off the machine would let anyone on the path sign people in.
pub fn check_url(url: &str, key: &str, p: &mut Problems) {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
        Ok(u) if u.scheme() == "http" && is_loopback(&u) => {}
        Ok(u) if u.scheme() == "http" => p.add(
            key,
            format!("{url:?}: http:// only on a loopback host; use https://"),
        ),
        _ => p.add(key, format!("{url:?} is not an https:// URL")),
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::AuthConfig;
    use authflow_shared::config::{ConfigError, ConfigFile, ConfigSource};

    const GOOD: &str = "[[identity.providers]]\nid = \"corp-idp\"\npreset = \"generic\"\nclient_id = \"af\"\nissuer = \"https://idp.example.com\"\n";

    fn check(text: &str, env: &[(&str, &str)]) -> Result<AuthConfig, ConfigError> {
        let src = ConfigSource {
            file: "auth.toml".into(),
            text: text.into(),
        };
        AuthConfig::from_source(&src, &env, |_, _| {})
    }

    fn secret() -> [(&'static str, &'static str); 1] {
        [("AUTHFLOW_IDP_CORP_IDP_CLIENT_SECRET", "s3cret")]
    }

    /// The keys of every problem, in file order.
    fn keys(e: ConfigError) -> Vec<String> {
        e.0.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn a_provider_takes_its_secret_from_its_own_variable() {
        let cfg = check(GOOD, &secret()).expect("valid");
        let p = &cfg.identity.providers[0];
        assert_eq!(p.secret.expose(), "s3cret");
        assert_eq!(p.scopes(), vec!["openid", "email", "profile"]);
        assert!(
            !format!("{cfg:?}").contains("s3cret"),
            "Debug shows the secret"
        );
        let e = check(GOOD, &[]).expect_err("no secret");
        assert_eq!(keys(e), vec!["identity.providers[0].client_id"]);
    }

    #[test]
    fn a_secret_in_the_file_is_refused_and_named() {
        let text = format!("{GOOD}client_secret = \"oops\"\n");
        let e = check(&text, &secret()).expect_err("secret in file");
        assert_eq!(e.0[0].key, "identity.providers[0].client_secret");
        assert!(
            e.0[0]
                .reason
                .contains("AUTHFLOW_IDP_CORP_IDP_CLIENT_SECRET"),
            "{e}"
        );
    }

    #[test]
    fn symmetric_and_none_algorithms_are_refused() {
        for alg in ["HS256", "none", "HS512"] {
            let text = format!("{GOOD}allowed_algs = [\"RS256\", \"{alg}\"]\n");
            let e = check(&text, &secret()).expect_err(alg);
            assert_eq!(keys(e), vec!["identity.providers[0].allowed_algs"], "{alg}");
        }
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        let text = GOOD.replace("https://idp.example.com", "http://idp.example.com");
        let e = check(&text, &secret()).expect_err("http issuer");
        assert_eq!(keys(e), vec!["identity.providers[0].issuer"]);
        let text = GOOD.replace("https://idp.example.com", "http://127.0.0.1:5556");
        check(&text, &secret()).expect("loopback");
        let text = format!("public_url = \"http://auth.example.com\"\n{GOOD}");
        let e = check(&text, &secret()).expect_err("http public_url");
        assert_eq!(keys(e), vec!["public_url"]);
    }

    #[test]
    fn ids_must_fit_a_url_and_be_unique() {
        let text = GOOD.replace("corp-idp", "Corp IdP");
        let e = check(&text, &[("AUTHFLOW_IDP_CORP IDP_CLIENT_SECRET", "x")]).expect_err("bad id");
        assert!(keys(e).contains(&"identity.providers[0].id".to_string()));
        let text = format!("{GOOD}\n{GOOD}");
        let e = check(&text, &secret()).expect_err("twice");
        assert!(keys(e).contains(&"identity.providers[1].id".to_string()));
    }

    #[test]
    fn microsofts_shared_tenants_need_an_allow_list() {
        let text =
            "[[identity.providers]]\nid = \"entra\"\npreset = \"microsoft\"\nclient_id = \"af\"\n";
        let env = [("AUTHFLOW_IDP_ENTRA_CLIENT_SECRET", "x")];
        let e = check(text, &env).expect_err("organizations without tenants");
        assert_eq!(keys(e), vec!["identity.providers[0].allowed_tenants"]);
        let text = format!("{text}allowed_tenants = [\"9188040d-6c67-4c5b-b112-36a304b66dad\"]\n");
        let cfg = check(&text, &env).expect("valid");
        assert_eq!(
            cfg.identity.providers[0].issuer().as_deref(),
            Some("https://login.microsoftonline.com/organizations/v2.0")
        );
    }

    #[test]
    fn github_defaults_and_its_urls() {
        let text = "[[identity.providers]]\nid = \"gh\"\npreset = \"github\"\nclient_id = \"af\"\nallowed_orgs = [\"acme\"]\n";
        let cfg = check(text, &[("AUTHFLOW_IDP_GH_CLIENT_SECRET", "x")]).expect("valid");
        let p = &cfg.identity.providers[0];
        assert_eq!(p.scopes(), vec!["read:user", "user:email", "read:org"]);
        assert_eq!(p.github_urls().2, "https://api.github.com");
        let text =
            format!("{text}token_url = \"http://github.corp.example/login/oauth/access_token\"\n");
        let e = check(&text, &[("AUTHFLOW_IDP_GH_CLIENT_SECRET", "x")]).expect_err("http");
        assert_eq!(keys(e), vec!["identity.providers[0].token_url"]);
    }

    #[test]
    fn supabase_users_cannot_take_providers() {
        let text = format!("provider = \"supabase\"\n[supabase]\nurl = \"https://x.supabase.co/auth/v1\"\nanon_key = \"k\"\nencryption_key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n{GOOD}");
        let e = check(&text, &secret()).expect_err("supabase");
        assert!(keys(e).contains(&"identity.providers".to_string()));
    }

    #[test]
    fn mail_base_url_is_an_alias_that_may_not_disagree() {
        let cfg = check("[mail]\nbase_url = \"https://a.example\"\n", &[]).expect("alias");
        assert_eq!(cfg.public_url(), "https://a.example");
        let cfg = check("public_url = \"https://b.example/\"\n", &[]).expect("new name");
        assert_eq!(cfg.public_url(), "https://b.example");
        let e = check(
            "public_url = \"https://b.example\"\n[mail]\nbase_url = \"https://a.example\"\n",
            &[],
        )
        .expect_err("disagree");
        assert_eq!(keys(e), vec!["mail.base_url"]);
    }
}
