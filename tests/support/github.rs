//! A GitHub stand-in (OAuth app + REST API) that follows GitHub's documented contract, for
//! the "Sign in with GitHub" tests: github.com itself cannot be reached from the tests, and
//! its accounts cannot be put in the states the tests need. Web and API share one loopback
//! port, so the auth service's `authorize_url`, `token_url` and `api_url` all point here.
//!
//! The contract it follows (docs.github.com, "Authorizing OAuth apps" and the REST pages of
//! users, emails and orgs):
//! - `GET /login/oauth/authorize?client_id&redirect_uri&scope&state[&code_challenge&
//!   code_challenge_method=S256]`: the signed-in test user (no page, as when the app is already
//!   authorized) is sent back with 302 to `redirect_uri?code&state`. A `redirect_uri` that is
//!   not the registered callback (or a path below it) ends at the callback with
//!   `error=redirect_uri_mismatch`; a user who denies ([`GitHubState::deny`]) with
//!   `error=access_denied`. An unknown `client_id` answers 404.
//! - `POST /login/oauth/access_token` (`client_id`, `client_secret`, `code`, `redirect_uri`,
//!   `code_verifier`, in the form body or the query): `{"access_token":"gho_…",
//!   "token_type":"bearer","scope":"read:user,user:email"}` as JSON when `Accept:
//!   application/json`, else form-encoded; failures answer 200 with `error`
//!   (`incorrect_client_credentials`, `redirect_uri_mismatch`, `bad_verification_code`), as
//!   GitHub does. A code is single use. A wrong PKCE verifier is `bad_verification_code` (an
//!   assumption: GitHub documents PKCE support, not this error's name).
//! - The API (`Authorization: Bearer <token>` or `token <token>`; a `User-Agent` header is
//!   required, else 403, as on api.github.com; a bad token is 401 "Bad credentials"):
//!   `GET /user` (`id`, `login`, `name`, `email` null: the public email is never the signed-in
//!   address), `GET /user/emails` (`[{email, primary, verified, visibility}]`; 404 without the
//!   `user:email` or `user` scope), `GET /user/orgs` (every org with `read:org`, else only
//!   public memberships), `GET /user/memberships/orgs[/<org>]` (`state: "active"`; 403 without
//!   `read:org`, 404 for an org the user is not in). Every response carries `X-OAuth-Scopes`.
//!
//! Every request is recorded ([`GitHubState::calls`]) for assertions such as "the emails were
//! read with the token the code was exchanged for".
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One address of a user, as `GET /user/emails` lists it.
#[derive(Clone, Debug)]
pub struct GitHubEmail {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

/// An organization the user belongs to; `public` is whether the membership is shown without
/// the `read:org` scope.
#[derive(Clone, Debug)]
pub struct GitHubOrg {
    pub id: u64,
    pub login: String,
    pub public: bool,
}

/// A GitHub account. `id` is the stable subject; `login` can be renamed.
#[derive(Clone, Debug)]
pub struct GitHubUser {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    pub emails: Vec<GitHubEmail>,
    pub orgs: Vec<GitHubOrg>,
}

impl GitHubUser {
    pub fn new(id: u64, login: &str) -> GitHubUser {
        GitHubUser {
            id,
            login: login.to_owned(),
            name: None,
            emails: Vec::new(),
            orgs: Vec::new(),
        }
    }

    pub fn email(mut self, email: &str, primary: bool, verified: bool) -> GitHubUser {
        self.emails.push(GitHubEmail {
            email: email.to_owned(),
            primary,
            verified,
        });
        self
    }

    /// Adds a membership; the org's id is derived from its name, so it is stable across runs.
    pub fn member_of(mut self, org: &str, public: bool) -> GitHubUser {
        let id = 9000 + org.bytes().map(u64::from).sum::<u64>();
        self.orgs.push(GitHubOrg {
            id,
            login: org.to_owned(),
            public,
        });
        self
    }

    /// The ordinary case: one primary, verified address.
    pub fn verified(id: u64, login: &str, email: &str) -> GitHubUser {
        GitHubUser::new(id, login).email(email, true, true)
    }

    /// The primary address is unverified and there is no other: no usable email.
    pub fn primary_unverified(id: u64, login: &str, email: &str) -> GitHubUser {
        GitHubUser::new(id, login).email(email, true, false)
    }

    /// The primary address is unverified, a secondary one is verified: still no usable email
    /// (the issue takes only the primary-and-verified one).
    pub fn only_secondary_verified(
        id: u64,
        login: &str,
        primary: &str,
        secondary: &str,
    ) -> GitHubUser {
        GitHubUser::new(id, login)
            .email(primary, true, false)
            .email(secondary, false, true)
    }

    /// Several addresses, none verified.
    pub fn none_verified(id: u64, login: &str, emails: &[&str]) -> GitHubUser {
        emails
            .iter()
            .enumerate()
            .fold(GitHubUser::new(id, login), |u, (i, e)| {
                u.email(e, i == 0, false)
            })
    }
}

/// One request as the stand-in received it.
#[derive(Clone, Debug)]
pub struct GitHubCall {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    pub body: String,
}

struct PendingCode {
    user: u64,
    scopes: Vec<String>,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
}

/// What the stand-in knows; tests change it between steps (rename a user, sign in another).
pub struct GitHubState {
    pub client_id: String,
    pub client_secret: String,
    /// The OAuth app's registered callback URL.
    pub callback: String,
    pub users: Vec<GitHubUser>,
    /// Who `/login/oauth/authorize` signs in.
    pub signed_in: u64,
    /// When set, the user denies the app at `/login/oauth/authorize`.
    pub deny: bool,
    codes: HashMap<String, PendingCode>,
    /// access token -> (user id, granted scopes)
    tokens: HashMap<String, (u64, Vec<String>)>,
    pub calls: Vec<GitHubCall>,
}

impl GitHubState {
    pub fn sign_in_as(&mut self, id: u64) {
        assert!(self.users.iter().any(|u| u.id == id), "no GitHub user {id}");
        self.signed_in = id;
    }

    /// Renames a login, as GitHub allows; the id stays.
    pub fn rename(&mut self, id: u64, new_login: &str) {
        if let Some(u) = self.users.iter_mut().find(|u| u.id == id) {
            u.login = new_login.to_owned();
        }
    }

    /// The calls whose path starts with `prefix`.
    pub fn calls_to(&self, prefix: &str) -> Vec<GitHubCall> {
        self.calls
            .iter()
            .filter(|c| c.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// The running stand-in, stopped on drop.
pub struct GitHub {
    pub port: u16,
    pub client_id: String,
    pub client_secret: String,
    pub state: Arc<Mutex<GitHubState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

type Response = hyper::Response<Full<Bytes>>;

fn respond(status: u16, headers: &[(&str, String)], content_type: &str, body: String) -> Response {
    let mut b = hyper::Response::builder()
        .status(status)
        .header("content-type", content_type);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Full::new(Bytes::from(body))).expect("response")
}

fn json_reply(status: u16, scopes: &[String], body: Value) -> Response {
    respond(
        status,
        &[("x-oauth-scopes", scopes.join(", "))],
        "application/json; charset=utf-8",
        body.to_string(),
    )
}

fn api_error(status: u16, message: &str) -> Response {
    json_reply(
        status,
        &[],
        json!({"message": message, "documentation_url": "https://docs.github.com/rest",
               "status": status.to_string()}),
    )
}

fn redirect(location: String) -> Response {
    respond(302, &[("location", location)], "text/html", String::new())
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}

fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// GitHub's redirect URI rule: same scheme, host and port as the callback, path the same or
/// below it.
fn redirect_allowed(callback: &str, redirect_uri: &str) -> bool {
    redirect_uri == callback
        || redirect_uri.starts_with(&format!("{}/", callback.trim_end_matches('/')))
}

struct Request {
    method: String,
    path: String,
    params: HashMap<String, String>,
    bearer: Option<String>,
    accept: String,
    user_agent: bool,
}

fn user_json(u: &GitHubUser) -> Value {
    json!({"login": u.login, "id": u.id, "node_id": format!("U_{}", u.id),
           "avatar_url": format!("https://avatars.example/u/{}", u.id),
           "html_url": format!("https://github.example/{}", u.login), "type": "User",
           "site_admin": false, "name": u.name, "email": Value::Null})
}

fn org_json(o: &GitHubOrg) -> Value {
    json!({"login": o.login, "id": o.id, "node_id": format!("O_{}", o.id),
           "url": format!("https://api.github.example/orgs/{}", o.login), "description": Value::Null})
}

fn membership_json(u: &GitHubUser, o: &GitHubOrg) -> Value {
    json!({"state": "active", "role": "member", "organization": org_json(o),
           "user": {"login": u.login, "id": u.id}})
}

fn authorize(st: &mut GitHubState, r: &Request) -> Response {
    let p = |k: &str| r.params.get(k).cloned();
    if p("client_id").as_deref() != Some(st.client_id.as_str()) {
        return respond(404, &[], "text/plain", "Not Found".into());
    }
    let state = p("state").unwrap_or_default();
    let redirect_uri = p("redirect_uri");
    let target = redirect_uri.clone().unwrap_or_else(|| st.callback.clone());
    if !redirect_allowed(&st.callback, &target) {
        return redirect(with_query(
            &st.callback,
            &[
                ("error", "redirect_uri_mismatch"),
                (
                    "error_description",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                ),
                ("state", &state),
            ],
        ));
    }
    if st.deny {
        return redirect(with_query(
            &target,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "The user has denied your application access.",
                ),
                ("state", &state),
            ],
        ));
    }
    let code_challenge = match (p("code_challenge"), p("code_challenge_method").as_deref()) {
        (Some(c), Some("S256")) => Some(c),
        (Some(_), _) => return respond(400, &[], "text/plain", "Only S256 is supported".into()),
        (None, _) => None,
    };
    let scopes = p("scope")
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let code = token()[..20].to_owned();
    st.codes.insert(
        code.clone(),
        PendingCode {
            user: st.signed_in,
            scopes,
            redirect_uri,
            code_challenge,
        },
    );
    redirect(with_query(&target, &[("code", &code), ("state", &state)]))
}

fn access_token(st: &mut GitHubState, r: &Request) -> Response {
    let p = |k: &str| r.params.get(k).cloned().unwrap_or_default();
    let answer = |pairs: &[(&str, &str)]| {
        if r.accept.contains("application/json") {
            let map: serde_json::Map<String, Value> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            respond(
                200,
                &[],
                "application/json; charset=utf-8",
                Value::Object(map).to_string(),
            )
        } else {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            respond(200, &[], "application/x-www-form-urlencoded", body)
        }
    };
    let error = |code: &str, description: &str| {
        answer(&[
            ("error", code),
            ("error_description", description),
            (
                "error_uri",
                "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors",
            ),
        ])
    };
    if p("client_id") != st.client_id || p("client_secret") != st.client_secret {
        return error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    let Some(pending) = st.codes.remove(&p("code")) else {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    };
    if let Some(uri) = &pending.redirect_uri {
        if r.params.get("redirect_uri").is_some_and(|u| u != uri) {
            return error(
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
            );
        }
    }
    if let Some(challenge) = &pending.code_challenge {
        if s256(&p("code_verifier")) != *challenge {
            return error(
                "bad_verification_code",
                "The code_verifier does not match the code_challenge.",
            );
        }
    }
    let access = format!("gho_{}", token());
    let scope = pending.scopes.join(",");
    st.tokens
        .insert(access.clone(), (pending.user, pending.scopes));
    answer(&[
        ("access_token", &access),
        ("token_type", "bearer"),
        ("scope", &scope),
    ])
}

fn api(st: &GitHubState, r: &Request) -> Response {
    if !r.user_agent {
        return api_error(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).",
        );
    }
    let Some((user_id, scopes)) = r.bearer.as_ref().and_then(|t| st.tokens.get(t)) else {
        return api_error(401, "Bad credentials");
    };
    let Some(user) = st.users.iter().find(|u| u.id == *user_id) else {
        return api_error(401, "Bad credentials");
    };
    let has = |wanted: &[&str]| scopes.iter().any(|s| wanted.contains(&s.as_str()));
    let read_org = has(&["read:org", "write:org", "admin:org"]);
    match r.path.as_str() {
        "/user" => json_reply(200, scopes, user_json(user)),
        "/user/emails" if has(&["user", "user:email"]) => json_reply(
            200,
            scopes,
            Value::Array(
                user.emails
                    .iter()
                    .map(|e| {
                        json!({"email": e.email, "primary": e.primary, "verified": e.verified,
                               "visibility": if e.primary { json!("private") } else { Value::Null }})
                    })
                    .collect(),
            ),
        ),
        "/user/emails" => api_error(404, "Not Found"),
        "/user/orgs" => json_reply(
            200,
            scopes,
            Value::Array(
                user.orgs
                    .iter()
                    .filter(|o| o.public || read_org || has(&["user"]))
                    .map(org_json)
                    .collect(),
            ),
        ),
        p if p.starts_with("/user/memberships/orgs") && !read_org => api_error(
            403,
            "You need at least read:org scope or user scope to list your organization memberships.",
        ),
        "/user/memberships/orgs" => json_reply(
            200,
            scopes,
            Value::Array(user.orgs.iter().map(|o| membership_json(user, o)).collect()),
        ),
        p => match p
            .strip_prefix("/user/memberships/orgs/")
            .and_then(|org| user.orgs.iter().find(|o| o.login.eq_ignore_ascii_case(org)))
        {
            Some(o) => json_reply(200, scopes, membership_json(user, o)),
            None => api_error(404, "Not Found"),
        },
    }
}

fn handle(st: &mut GitHubState, r: &Request) -> Response {
    match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/login/oauth/authorize") => authorize(st, r),
        ("POST", "/login/oauth/access_token") => access_token(st, r),
        ("GET", p) if p.starts_with("/user") => api(st, r),
        _ => api_error(404, "Not Found"),
    }
}

impl GitHub {
    /// Starts the stand-in with an OAuth app whose registered callback is `callback` and the
    /// given users; the first one is signed in at `/login/oauth/authorize`.
    pub async fn start(callback: &str, users: Vec<GitHubUser>) -> GitHub {
        let first = users.first().map(|u| u.id).expect("at least one user");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client_id = format!("Iv1.{}", &token()[..16]);
        let client_secret = token() + &token()[..8];
        let state = Arc::new(Mutex::new(GitHubState {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            callback: callback.to_owned(),
            users,
            signed_in: first,
            deny: false,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            calls: Vec::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(serve(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        GitHub {
            port,
            client_id,
            client_secret,
            state,
            task,
        }
    }

    /// The base of both the web (`/login/oauth/...`) and the API (`/user...`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn authorize_url(&self) -> String {
        format!("{}/login/oauth/authorize", self.url())
    }
    pub fn token_url(&self) -> String {
        format!("{}/login/oauth/access_token", self.url())
    }
    pub fn api_url(&self) -> String {
        self.url()
    }

    pub fn sign_in_as(&self, id: u64) {
        self.state.lock().expect("lock").sign_in_as(id);
    }
    pub fn rename(&self, id: u64, new_login: &str) {
        self.state.lock().expect("lock").rename(id, new_login);
    }
    pub fn set_deny(&self, deny: bool) {
        self.state.lock().expect("lock").deny = deny;
    }
    pub fn calls_to(&self, prefix: &str) -> Vec<GitHubCall> {
        self.state.lock().expect("lock").calls_to(prefix)
    }
}

async fn serve(state: &Mutex<GitHubState>, req: hyper::Request<hyper::body::Incoming>) -> Response {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let accept = header("accept");
    let user_agent = header("user-agent");
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&body) {
        params.extend(
            map.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned()))),
        );
    } else {
        params.extend(form_urlencoded::parse(body.as_bytes()).into_owned());
    }
    let bearer = authorization.as_deref().and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("bearer "))
            .or_else(|| a.strip_prefix("token "))
            .map(str::to_owned)
    });
    let request = Request {
        method: method.clone(),
        path: path.clone(),
        params,
        bearer,
        accept: accept.clone().unwrap_or_default(),
        user_agent: user_agent.as_deref().is_some_and(|u| !u.is_empty()),
    };
    let mut st = state.lock().expect("lock");
    st.calls.push(GitHubCall {
        method,
        path: if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        },
        authorization,
        accept,
        user_agent,
        body,
    });
    handle(&mut st, &request)
}
