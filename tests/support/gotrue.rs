//! A Supabase Auth (GoTrue) test server that follows GoTrue's documented HTTP contract
//! (`security-and-gotrue.md` Part B): the one allowed stand-in, since the real service
//! cannot be reached from here. It keeps users and sessions in memory and records every call.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password: String,
    pub confirmed: bool,
    /// `app_metadata.roles`, as a project's service role would set them.
    pub roles: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub bearer: Option<String>,
    pub apikey: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub struct State {
    pub users: HashMap<String, User>,
    /// access token -> (user id, session id)
    pub sessions: HashMap<String, (String, String)>,
    /// refresh token -> access token
    pub refresh: HashMap<String, String>,
    /// token_hash -> (email, type)
    pub otps: HashMap<String, (String, String)>,
    pub calls: Vec<Call>,
    /// When set, every call answers 503 (an outage behind a load balancer).
    pub down: bool,
}

impl State {
    pub fn confirm(&mut self, email: &str) {
        if let Some(u) = self.users.get_mut(email) {
            u.confirmed = true;
        }
    }
    pub fn otp_for(&self, email: &str, kind: &str) -> Option<String> {
        self.otps
            .iter()
            .find(|(_, (e, k))| e == email && k == kind)
            .map(|(h, _)| h.clone())
    }
    pub fn calls_to(&self, path_prefix: &str) -> Vec<Call> {
        self.calls
            .iter()
            .filter(|c| c.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }
}

pub struct GoTrue {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GoTrue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: u16, body: Value) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(code) = body.get("error_code").and_then(Value::as_str) {
        b = b.header("x-sb-error-code", code);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn error(status: u16, code: &str, msg: &str) -> hyper::Response<Full<Bytes>> {
    reply(
        status,
        json!({"code": status, "error_code": code, "msg": msg}),
    )
}

fn user_json(u: &User) -> Value {
    json!({"id": u.id, "aud": "authenticated", "role": "authenticated", "email": u.email,
           "email_confirmed_at": if u.confirmed { json!("2026-01-01T00:00:00Z") } else { Value::Null },
           "app_metadata": {"provider": "email", "providers": ["email"], "roles": u.roles}, "user_metadata": {},
           "identities": [], "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
           "is_anonymous": false})
}

fn issue_tokens(st: &mut State, user: &User) -> Value {
    let access = format!("at-{}", uuid());
    let refresh = format!("rt-{}", uuid());
    st.sessions
        .insert(access.clone(), (user.id.clone(), uuid()));
    st.refresh.insert(refresh.clone(), access.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({"access_token": access, "token_type": "bearer", "expires_in": 3600, "expires_at": now + 3600,
           "refresh_token": refresh, "user": user_json(user)})
}

fn uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn handle(
    st: &mut State,
    method: &str,
    path: &str,
    query: &str,
    bearer: Option<&str>,
    body: &Value,
) -> hyper::Response<Full<Bytes>> {
    if st.down {
        return reply(503, json!({"message": "upstream unavailable"}));
    }
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match (method, path) {
        ("GET", "/health") => reply(
            200,
            json!({"version": "test", "name": "GoTrue", "description": "stand-in"}),
        ),
        ("POST", "/signup") => {
            let (email, password) = (s("email").to_lowercase(), s("password"));
            if password.is_empty() {
                return error(400, "validation_failed", "Signup requires a valid password");
            }
            if password.len() < 6 {
                return reply(
                    422,
                    json!({"code": 422, "error_code": "weak_password", "msg": "Password should be at least 6 characters.", "weak_password": {"reasons": ["length"]}}),
                );
            }
            if !email.contains('@') {
                return error(
                    400,
                    "validation_failed",
                    "Unable to validate email address: invalid format",
                );
            }
            if let Some(u) = st.users.get(&email) {
                if u.confirmed {
                    // Obfuscated user: a fresh random id, nothing else revealed.
                    let fake = User {
                        id: uuid(),
                        email: email.clone(),
                        password: String::new(),
                        confirmed: false,
                        roles: Vec::new(),
                    };
                    return reply(200, user_json(&fake));
                }
                return reply(200, user_json(&u.clone()));
            }
            let u = User {
                id: uuid(),
                email: email.clone(),
                password,
                confirmed: false,
                roles: Vec::new(),
            };
            st.otps.insert(
                format!("confirm-{}", uuid()),
                (email.clone(), "email".into()),
            );
            st.users.insert(email, u.clone());
            reply(200, user_json(&u))
        }
        ("POST", "/token") if query == "grant_type=password" => {
            let email = s("email").to_lowercase();
            match st.users.get(&email).cloned() {
                Some(u) if u.password == s("password") => {
                    if !u.confirmed {
                        return error(400, "email_not_confirmed", "Email not confirmed");
                    }
                    let t = issue_tokens(st, &u);
                    reply(200, t)
                }
                _ => error(400, "invalid_credentials", "Invalid login credentials"),
            }
        }
        ("POST", "/token") if query == "grant_type=refresh_token" => {
            let Some(access) = st.refresh.remove(&s("refresh_token")) else {
                return error(
                    400,
                    "refresh_token_not_found",
                    "Invalid Refresh Token: Refresh Token Not Found",
                );
            };
            let Some((uid, _)) = st.sessions.remove(&access) else {
                return error(400, "session_not_found", "Session not found");
            };
            let Some(u) = st.users.values().find(|u| u.id == uid).cloned() else {
                return error(400, "user_not_found", "User not found");
            };
            let t = issue_tokens(st, &u);
            reply(200, t)
        }
        ("POST", "/logout") => {
            let Some(token) = bearer else {
                return error(
                    401,
                    "no_authorization",
                    "This endpoint requires a valid Bearer token",
                );
            };
            let Some((uid, _)) = st.sessions.get(token).cloned() else {
                return error(403, "session_not_found", "Session not found");
            };
            match query {
                "scope=local" | "" => {
                    st.sessions.remove(token);
                }
                "scope=global" => st.sessions.retain(|_, (u, _)| *u != uid),
                "scope=others" => st.sessions.retain(|t, (u, _)| *u != uid || t == token),
                _ => return error(400, "validation_failed", "Unsupported logout scope"),
            }
            hyper::Response::builder()
                .status(204)
                .body(Full::new(Bytes::new()))
                .expect("response")
        }
        ("POST", "/recover") => {
            let email = s("email").to_lowercase();
            if email.is_empty() {
                return error(
                    400,
                    "validation_failed",
                    "Password recovery requires an email",
                );
            }
            if st.users.contains_key(&email) {
                st.otps
                    .retain(|_, (e, k)| !(e == &email && k == "recovery"));
                st.otps
                    .insert(format!("recovery-{}", uuid()), (email, "recovery".into()));
            }
            reply(200, json!({}))
        }
        ("POST", "/verify") => {
            let kind = s("type");
            let hash = s("token_hash");
            match st.otps.get(&hash).cloned() {
                Some((email, k)) if k == kind || (kind == "signup" && k == "email") => {
                    st.otps.remove(&hash);
                    st.confirm(&email);
                    let u = st.users.get(&email).cloned().expect("user");
                    let t = issue_tokens(st, &u);
                    reply(200, t)
                }
                _ => error(403, "otp_expired", "Email link is invalid or has expired"),
            }
        }
        ("PUT", "/user") => {
            let Some(token) = bearer else {
                return error(
                    401,
                    "no_authorization",
                    "This endpoint requires a valid Bearer token",
                );
            };
            let Some((uid, _)) = st.sessions.get(token).cloned() else {
                return error(403, "session_not_found", "Session not found");
            };
            let password = s("password");
            if password.len() < 6 {
                return error(
                    422,
                    "weak_password",
                    "Password should be at least 6 characters.",
                );
            }
            let Some(u) = st.users.values_mut().find(|u| u.id == uid) else {
                return error(403, "user_not_found", "User not found");
            };
            if u.password == password {
                return error(
                    422,
                    "same_password",
                    "New password should be different from the old password.",
                );
            }
            u.password = password;
            let u = u.clone();
            // GoTrue keeps the calling session and deletes the others.
            st.sessions
                .retain(|t, (owner, _)| *owner != uid || t == token);
            reply(200, user_json(&u))
        }
        _ => error(404, "not_found", "Not found"),
    }
}

impl GoTrue {
    pub async fn start() -> GoTrue {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
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
                        async move {
                            let method = req.method().as_str().to_owned();
                            let path = req.uri().path().to_owned();
                            let query = req.uri().query().unwrap_or("").to_owned();
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned)
                            };
                            let bearer = header("authorization")
                                .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
                            let apikey = header("apikey");
                            let bytes = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let mut st = state.lock().expect("lock");
                            let full = if query.is_empty() {
                                path.clone()
                            } else {
                                format!("{path}?{query}")
                            };
                            st.calls.push(Call {
                                method: method.clone(),
                                path: full,
                                bearer: bearer.clone(),
                                apikey,
                                body: body.clone(),
                            });
                            // A user bearer token only counts where GoTrue reads one.
                            let user_bearer = bearer.as_deref().filter(|b| b.starts_with("at-"));
                            Ok::<_, std::convert::Infallible>(handle(
                                &mut st,
                                &method,
                                &path,
                                &query,
                                user_bearer,
                                &body,
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        GoTrue { port, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
