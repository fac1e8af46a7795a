//! Sign in with GitHub: OAuth 2 with PKCE (GitHub is not an OpenID Connect provider, so there
//! is no ID token to check). This module owns what GitHub's documented contract says about
//! one sign-in: the authorization URL, the code exchange, and reading who signed in from the
//! REST API (`/user`, `/user/emails`, organization memberships), with `allowed_domains` and
//! `allowed_orgs` applied to that answer. Where the browser goes and what the answer leads to
//! (state, accounts, sessions) is [`super::flow`]'s.
//!
//! Neither the client secret nor the access token ever goes into an [`SsoError`] or a log
//! line: errors name the endpoint and what went wrong, nothing the request carried.

use super::config::ProviderConfig;
use super::{ProviderUser, SsoError};
use authflow_shared::config::Secret;
use reqwest::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use url::Url;

/// The REST API version the answers below are read as (GitHub's date-named versions).
const API_VERSION: &str = "2022-11-28";

/// Organizations listed by `GET /user/orgs` in one page (GitHub's maximum); groups beyond the
/// first hundred are not read, which only matters without `allowed_orgs`.
const ORGS_PER_PAGE: &str = "100";

/// One configured GitHub (github.com or an Enterprise server) and the client to reach it.
#[derive(Debug)]
pub struct GitHub {
    client_id: String,
    secret: Secret,
    scopes: Vec<String>,
    authorize_url: String,
    token_url: String,
    api_url: String,
    allowed_orgs: Vec<String>,
    allowed_domains: Vec<String>,
    http: reqwest::Client,
}

/// An access token from the code exchange. No `Debug` or `Display`, so it cannot be printed
/// by accident; it lives for the few requests of one sign-in and is never stored.
struct AccessToken(String);

impl GitHub {
    /// `http` is [`super::http_client`]'s: its user agent is required by GitHub's API, and it
    /// follows no redirects.
    pub fn new(cfg: &ProviderConfig, http: reqwest::Client) -> GitHub {
        let (authorize_url, token_url, api_url) = cfg.github_urls();
        GitHub {
            client_id: cfg.client_id.clone(),
            secret: cfg.secret.clone(),
            scopes: cfg.scopes(),
            authorize_url,
            token_url,
            api_url,
            allowed_orgs: cfg.allowed_orgs.clone(),
            allowed_domains: cfg.allowed_domains.clone(),
            http,
        }
    }

    /// Where to send the browser: the authorize URL with `client_id`, `redirect_uri`, `scope`
    /// (space-separated), `state` and the PKCE `code_challenge` (S256), each percent-encoded.
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
    ) -> String {
        let scope = self.scopes.join(" ");
        let params = [
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", scope.as_str()),
            ("state", state),
            ("code_challenge", code_challenge),
            ("code_challenge_method", "S256"),
        ];
        match Url::parse_with_params(&self.authorize_url, params) {
            Ok(url) => url.into(),
            // `authorize_url` is checked to be a URL when the config is loaded; were it not,
            // the query is still appended encoded, and the browser shows GitHub's (or the
            // address's) own error.
            Err(_) => {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params)
                    .finish();
                format!("{}?{query}", self.authorize_url)
            }
        }
    }

    /// Exchanges `code` (with the PKCE verifier) and reads who signed in: the numeric id as
    /// the subject, the primary address if GitHub has verified it, and the organizations that
    /// are the person's groups. `Err(NotAllowed)` when `allowed_domains` or `allowed_orgs`
    /// does not let the person in.
    pub async fn user(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<ProviderUser, SsoError> {
        let token = self.exchange(code, redirect_uri, code_verifier).await?;
        let subject = self.subject(&token).await?;
        let email = self.verified_primary_email(&token).await?;
        self.check_domain(email.as_deref())?;
        let groups = self.groups(&token).await?;
        Ok(ProviderUser {
            subject,
            email_verified: email.is_some(),
            email,
            groups,
            // GitHub tells an OAuth app nothing about how the person signed in.
            upstream_mfa: false,
        })
    }

    /// `POST token_url`. GitHub answers a refused exchange with 200 and `error`, so the body,
    /// not the status, says whether a token came back.
    async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<AccessToken, SsoError> {
        let what = "token endpoint";
        let response = self
            .http
            .post(&self.token_url)
            .header(header::ACCEPT, "application/json")
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.expose()),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ])
            .send()
            .await
            .map_err(|e| unavailable(what, &e))?;
        if !response.status().is_success() {
            return Err(answered(what, response.status()));
        }
        let body = response.bytes().await.map_err(|e| unavailable(what, &e))?;
        read_token_answer(&body)
    }

    /// `GET /user`: the numeric `id` is the subject. The `login` is not: GitHub lets people
    /// rename it, and a freed login can be taken by someone else.
    async fn subject(&self, token: &AccessToken) -> Result<String, SsoError> {
        let user: serde_json::Value = self
            .api_get(token, &["user"])
            .await?
            .ok_or_else(|| SsoError::Unavailable("GitHub /user was refused".into()))?;
        subject_of(&user).ok_or_else(|| SsoError::Token("GitHub's user has no numeric id".into()))
    }

    /// `GET /user/emails`: the primary address, only if GitHub has verified it. `None` when
    /// the `user:email` scope was not granted (GitHub answers 404 or 403).
    async fn verified_primary_email(
        &self,
        token: &AccessToken,
    ) -> Result<Option<String>, SsoError> {
        let emails: Option<Vec<EmailEntry>> = self.api_get(token, &["user", "emails"]).await?;
        Ok(emails.as_deref().and_then(verified_primary))
    }

    /// `allowed_domains`, when set, lets in only a verified address in one of its domains.
    fn check_domain(&self, email: Option<&str>) -> Result<(), SsoError> {
        if self.allowed_domains.is_empty() {
            return Ok(());
        }
        match email.map(domain_of) {
            Some(domain)
                if self
                    .allowed_domains
                    .iter()
                    .any(|d| d.to_lowercase() == domain) =>
            {
                Ok(())
            }
            Some(_) => Err(SsoError::NotAllowed("email domain not allowed".into())),
            None => Err(SsoError::NotAllowed(
                "no verified primary email on GitHub".into(),
            )),
        }
    }

    /// The person's groups. With `allowed_orgs`, the allowed organizations they are an active
    /// member of (at least one, else `NotAllowed`), spelt as in the config so that `role_map`
    /// keys written next to them match. Without, every organization GitHub lists, best effort.
    async fn groups(&self, token: &AccessToken) -> Result<Vec<String>, SsoError> {
        if self.allowed_orgs.is_empty() {
            return Ok(self.org_logins(token).await);
        }
        let mut member_of = Vec::new();
        // One request per allowed org, in turn: lists are short (a few orgs), and the answer
        // needs every membership, not only the first, for the groups.
        for org in &self.allowed_orgs {
            if self.is_active_member(token, org).await? {
                member_of.push(org.clone());
            }
        }
        if member_of.is_empty() {
            return Err(SsoError::NotAllowed(
                "not a member of an allowed organization".into(),
            ));
        }
        Ok(member_of)
    }

    /// `GET /user/memberships/orgs/{org}`: an active membership (not a pending invitation).
    /// 404 (not a member) and 403 (`read:org` not granted, or the org restricts OAuth apps)
    /// both mean "not shown to be a member".
    async fn is_active_member(&self, token: &AccessToken, org: &str) -> Result<bool, SsoError> {
        let membership: Option<Membership> = self
            .api_get(token, &["user", "memberships", "orgs", org])
            .await?;
        Ok(membership.is_some_and(|m| m.is_active_in(org)))
    }

    /// `GET /user/orgs` logins, for groups only (it lets no one in or out): any failure is an
    /// empty list, not a failed sign-in.
    async fn org_logins(&self, token: &AccessToken) -> Vec<String> {
        let orgs: Result<Option<Vec<OrgRef>>, SsoError> = self
            .api_get_with(token, &["user", "orgs"], &[("per_page", ORGS_PER_PAGE)])
            .await;
        match orgs {
            Ok(Some(orgs)) => orgs.into_iter().map(|o| o.login).collect(),
            Ok(None) | Err(_) => Vec::new(),
        }
    }

    /// [`Self::api_get_with`] without a query.
    async fn api_get<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        segments: &[&str],
    ) -> Result<Option<T>, SsoError> {
        self.api_get_with(token, segments, &[]).await
    }

    /// `GET {api_url}/{segments}` (each segment percent-encoded) with the token. `Ok(None)`
    /// when GitHub answers 403 or 404, which for the endpoints read here means a scope was not
    /// granted or there is no such membership; any other non-2xx answer, or a body that is
    /// not a `T`, is `Unavailable`.
    async fn api_get_with<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Option<T>, SsoError> {
        let what = format!("/{}", segments.join("/"));
        let url = api_endpoint(&self.api_url, segments, query)
            .ok_or_else(|| SsoError::Unavailable("GitHub api_url is not a URL".into()))?;
        let response = self
            .http
            .get(url)
            .bearer_auth(&token.0)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .send()
            .await
            .map_err(|e| unavailable(&what, &e))?;
        match response.status() {
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Ok(None),
            s if s.is_success() => {
                let body = response.bytes().await.map_err(|e| unavailable(&what, &e))?;
                serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|_| SsoError::Unavailable(format!("GitHub {what}: unreadable answer")))
            }
            s => Err(answered(&what, s)),
        }
    }
}

/// The token endpoint's JSON answer: `access_token` on success, `error` (a code such as
/// `bad_verification_code`) on refusal. No `Debug`: it holds the token.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The token from the token endpoint's body; a refusal is `Exchange(error code)`, anything
/// else without a token is `Unavailable`.
fn read_token_answer(body: &[u8]) -> Result<AccessToken, SsoError> {
    let unreadable = || SsoError::Unavailable("GitHub token endpoint: unreadable answer".into());
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|_| unreadable())?;
    match (answer.access_token, answer.error) {
        (_, Some(error)) => Err(SsoError::Exchange(error_code(&error))),
        (Some(token), None) if !token.is_empty() => Ok(AccessToken(token)),
        _ => Err(unreadable()),
    }
}

/// An error code from the provider, as it goes into logs and metrics: GitHub's codes are
/// `snake_case` words, so anything else is cut down to those characters and 64 bytes.
fn error_code(error: &str) -> String {
    let code: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if code.is_empty() {
        "unrecognized_error".into()
    } else {
        code
    }
}

/// `id` from `GET /user`, as a decimal string.
fn subject_of(user: &serde_json::Value) -> Option<String> {
    user.get("id")
        .and_then(serde_json::Value::as_u64)
        .map(|id| id.to_string())
}

/// One address from `GET /user/emails`.
#[derive(Debug, Deserialize)]
struct EmailEntry {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

/// The primary address if it is verified, else `None`. A verified secondary address is
/// deliberately not used instead: the primary is the address GitHub vouches for as the
/// person's own (where it sends their mail), while a secondary may be an old employer's or a
/// shared one; taking it would let an account be linked by an address its owner does not
/// use as theirs.
fn verified_primary(emails: &[EmailEntry]) -> Option<String> {
    emails
        .iter()
        .find(|e| e.primary)
        .filter(|e| e.verified && !e.email.is_empty())
        .map(|e| e.email.clone())
}

/// The domain of an address: after the last `@`, lower-cased.
fn domain_of(email: &str) -> String {
    email
        .rsplit_once('@')
        .map_or(email, |(_, domain)| domain)
        .to_lowercase()
}

/// An organization as `GET /user/orgs` and memberships name it.
#[derive(Debug, Deserialize)]
struct OrgRef {
    login: String,
}

/// `GET /user/memberships/orgs/{org}`.
#[derive(Debug, Deserialize)]
struct Membership {
    #[serde(default)]
    state: String,
    #[serde(default)]
    organization: Option<OrgRef>,
}

impl Membership {
    /// Active (a `pending` invitation is not membership) and in `org`: the answer names the
    /// org asked about, compared as GitHub compares logins, without case.
    fn is_active_in(&self, org: &str) -> bool {
        self.state == "active"
            && self
                .organization
                .as_ref()
                .is_none_or(|o| same_org(&o.login, org))
    }
}

/// GitHub logins are case-insensitive (`Acme` and `acme` are one org).
fn same_org(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `{api_url}/{segments}?{query}`, each segment percent-encoded as a path segment (an org
/// login cannot add a path or a query). `None` if `api_url` is no base URL, which the config
/// check rules out.
fn api_endpoint(api_url: &str, segments: &[&str], query: &[(&str, &str)]) -> Option<Url> {
    let mut url = Url::parse(api_url).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Some(url)
}

/// A request that got no answer, without the URL or anything sent.
fn unavailable(what: &str, e: &reqwest::Error) -> SsoError {
    let why = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    SsoError::Unavailable(format!("GitHub {what}: {why}"))
}

/// An answer with an unexpected status.
fn answered(what: &str, status: StatusCode) -> SsoError {
    SsoError::Unavailable(format!("GitHub {what} answered {}", status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GitHub provider as an operator would write it, plus the secret from the environment.
    fn config() -> ProviderConfig {
        let mut cfg: ProviderConfig = serde_json::from_value(serde_json::json!({
            "id": "github",
            "preset": "github",
            "client_id": "Iv1.abc",
            "authorize_url": "https://ghe.example/login/oauth/authorize",
            "api_url": "https://ghe.example/api/v3/",
        }))
        .expect("provider config");
        cfg.secret = Secret::new("s3cret");
        cfg
    }

    fn github(cfg: &ProviderConfig) -> GitHub {
        GitHub::new(cfg, reqwest::Client::new())
    }

    fn params(url: &str) -> Vec<(String, String)> {
        Url::parse(url)
            .expect("url")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn authorization_url_carries_every_parameter_encoded() {
        let url = github(&config()).authorization_url(
            "https://app.example/auth/sso/github/callback?x=1&y=2",
            "st&te=/+",
            "chal_lenge-1",
        );
        assert!(url.starts_with("https://ghe.example/login/oauth/authorize?client_id=Iv1.abc&"));
        assert!(!url.contains(' '), "{url}");
        assert!(
            !url.contains("x=1&y=2"),
            "redirect_uri must stay one value: {url}"
        );
        let expected: Vec<(String, String)> = [
            ("client_id", "Iv1.abc"),
            (
                "redirect_uri",
                "https://app.example/auth/sso/github/callback?x=1&y=2",
            ),
            ("scope", "read:user user:email"),
            ("state", "st&te=/+"),
            ("code_challenge", "chal_lenge-1"),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(params(&url), expected);
    }

    #[test]
    fn authorization_url_asks_for_read_org_when_orgs_are_checked() {
        let mut cfg = config();
        cfg.allowed_orgs = vec!["acme".into()];
        let url = github(&cfg).authorization_url("https://app.example/cb", "s", "c");
        let scope = params(&url)
            .into_iter()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v);
        assert_eq!(scope.as_deref(), Some("read:user user:email read:org"));
    }

    #[test]
    fn authorization_url_keeps_a_query_already_in_authorize_url() {
        let mut cfg = config();
        cfg.authorize_url = Some("https://ghe.example/authorize?allow_signup=false".into());
        let url = github(&cfg).authorization_url("https://app.example/cb", "s", "c");
        let p = params(&url);
        assert_eq!(p[0], ("allow_signup".into(), "false".into()));
        assert_eq!(p[1], ("client_id".into(), "Iv1.abc".into()));
    }

    fn emails(json: serde_json::Value) -> Vec<EmailEntry> {
        serde_json::from_value(json).expect("emails")
    }

    #[test]
    fn email_is_the_verified_primary() {
        let list = emails(serde_json::json!([
            {"email": "old@work.example", "primary": false, "verified": true, "visibility": null},
            {"email": "ada@example.com", "primary": true, "verified": true, "visibility": "private"},
        ]));
        assert_eq!(verified_primary(&list).as_deref(), Some("ada@example.com"));
    }

    #[test]
    fn unverified_primary_gives_no_email_even_with_a_verified_secondary() {
        let list = emails(serde_json::json!([
            {"email": "ada@example.com", "primary": true, "verified": false},
            {"email": "ada@work.example", "primary": false, "verified": true},
        ]));
        assert_eq!(verified_primary(&list), None);
    }

    #[test]
    fn no_primary_or_no_addresses_gives_no_email() {
        assert_eq!(verified_primary(&[]), None);
        let list = emails(serde_json::json!([
            {"email": "ada@example.com", "verified": true},
        ]));
        assert_eq!(verified_primary(&list), None);
    }

    #[test]
    fn domain_is_after_the_last_at_and_lower_cased() {
        assert_eq!(domain_of("Ada@Example.COM"), "example.com");
        assert_eq!(domain_of("\"a@b\"@corp.example"), "corp.example");
    }

    #[test]
    fn allowed_domains_need_a_verified_address_in_the_list() {
        let mut cfg = config();
        cfg.allowed_domains = vec!["Example.com".into()];
        let gh = github(&cfg);
        assert!(gh.check_domain(Some("ada@EXAMPLE.com")).is_ok());
        assert!(matches!(
            gh.check_domain(Some("ada@example.com.evil.example")),
            Err(SsoError::NotAllowed(_))
        ));
        assert!(matches!(
            gh.check_domain(None),
            Err(SsoError::NotAllowed(_))
        ));
        assert!(github(&config()).check_domain(None).is_ok());
    }

    #[test]
    fn org_logins_compare_without_case() {
        assert!(same_org("Acme", "acme"));
        assert!(same_org("ACME-Labs", "acme-labs"));
        assert!(!same_org("acme", "acme-labs"));
    }

    fn membership(json: serde_json::Value) -> Membership {
        serde_json::from_value(json).expect("membership")
    }

    #[test]
    fn only_an_active_membership_of_the_org_asked_counts() {
        let active = membership(serde_json::json!({
            "state": "active", "role": "member", "organization": {"login": "Acme", "id": 1}
        }));
        assert!(active.is_active_in("acme"));
        assert!(!active.is_active_in("other"));
        let pending = membership(serde_json::json!({
            "state": "pending", "organization": {"login": "acme"}
        }));
        assert!(!pending.is_active_in("acme"));
    }

    #[test]
    fn subject_is_the_numeric_id_never_the_login() {
        let user = serde_json::json!({"id": 583231, "login": "octocat"});
        assert_eq!(subject_of(&user).as_deref(), Some("583231"));
        assert_eq!(subject_of(&serde_json::json!({"login": "octocat"})), None);
        assert_eq!(subject_of(&serde_json::json!({"id": "583231"})), None);
    }

    #[test]
    fn token_answer_reads_a_token_or_the_error_code() {
        let ok = read_token_answer(br#"{"access_token":"gho_x","token_type":"bearer","scope":""}"#);
        assert_eq!(ok.map(|t| t.0).ok().as_deref(), Some("gho_x"));
        let refused = read_token_answer(
            br#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#,
        );
        assert!(matches!(refused, Err(SsoError::Exchange(c)) if c == "bad_verification_code"));
        assert!(matches!(
            read_token_answer(b"access_token=gho_x&token_type=bearer"),
            Err(SsoError::Unavailable(_))
        ));
        assert!(matches!(
            read_token_answer(b"{}"),
            Err(SsoError::Unavailable(_))
        ));
    }

    #[test]
    fn error_codes_are_cut_to_word_characters() {
        assert_eq!(
            error_code("incorrect_client_credentials"),
            "incorrect_client_credentials"
        );
        assert_eq!(error_code("bad\ncode <x>"), "badcodex");
        assert_eq!(error_code("\n"), "unrecognized_error");
        assert_eq!(error_code(&"a".repeat(200)).len(), 64);
    }

    #[test]
    fn api_endpoints_keep_the_base_path_and_encode_segments() {
        let url = api_endpoint(
            "https://ghe.example/api/v3",
            &["user", "memberships", "orgs", "a/b?c"],
            &[],
        );
        assert_eq!(
            url.map(String::from).as_deref(),
            Some("https://ghe.example/api/v3/user/memberships/orgs/a%2Fb%3Fc")
        );
        let url = api_endpoint(
            "http://127.0.0.1:8080",
            &["user", "orgs"],
            &[("per_page", "100")],
        );
        assert_eq!(
            url.map(String::from).as_deref(),
            Some("http://127.0.0.1:8080/user/orgs?per_page=100")
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", github(&config()));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
