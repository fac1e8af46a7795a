//! Sessions written the way the auth service writes them, through the shared store.

use authflow_shared::fingerprint::FingerprintSpec;
use authflow_shared::session::SessionRecord;
use authflow_shared::store::{RedisSessionStore, SessionStore};
use authflow_shared::token::SessionToken;
use std::net::IpAddr;
use std::time::Duration;

/// Signs a user in the way the auth service does: a fresh token, a record with the
/// fingerprint of the given client, written through the shared store.
pub async fn create_session(
    store: &RedisSessionStore,
    user_id: &str,
    email: Option<&str>,
    client_ip: &str,
    user_agent: &str,
) -> SessionToken {
    create_session_with(store, user_id, email, client_ip, user_agent, |_| {}).await
}

pub async fn create_session_with(
    store: &RedisSessionStore,
    user_id: &str,
    email: Option<&str>,
    client_ip: &str,
    user_agent: &str,
    adjust: impl FnOnce(&mut SessionRecord),
) -> SessionToken {
    let token = SessionToken::for_user(user_id);
    let fp = fingerprint(client_ip, user_agent);
    let mut record = SessionRecord::new(
        user_id,
        email.map(Into::into),
        fp,
        authflow_shared::now_ms(),
        Duration::from_secs(3600),
    );
    adjust(&mut record);
    store
        .create(
            &token.id(),
            &record,
            Duration::from_secs(3600),
            authflow_shared::now_ms(),
        )
        .await
        .expect("create session");
    token
}

/// The default fingerprint of a client with this IP and User-Agent (no Accept-Language).
pub fn fingerprint(client_ip: &str, user_agent: &str) -> String {
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", user_agent.parse().expect("ua"));
    FingerprintSpec::default().compute(client_ip.parse::<IpAddr>().expect("ip"), &headers)
}
