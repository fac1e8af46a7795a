//! `authflow sessions`: operators listing and ending a user's sessions, against the Redis
//! (and, to turn an email into a user id, the user store) that an auth config names.

use authflow_auth::server::{pages_from_config, users_from_config, StartError};
use authflow_auth::sessions::{SessionView, Sessions};
use authflow_auth::AuthConfig;
use authflow_shared::config::ConfigFile;
use authflow_shared::store::{RedisSessionStore, SessionStore};
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List a user's sessions: handle, device, address hint, created, last seen.
    List {
        /// A user id, or an email address (looked up in the user store).
        #[arg(long)]
        user: String,
        #[arg(long, short)]
        config: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End one session of a user (`--session <handle>`), or all of them.
    Revoke {
        #[arg(long)]
        user: String,
        /// The handle from `sessions list`; without it every session of the user ends.
        #[arg(long)]
        session: Option<String>,
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error("{0}")]
    Config(#[from] authflow_shared::config::ConfigError),
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("{0}")]
    Api(#[from] authflow_auth::error::ApiError),
    #[error("no account has the address {0}")]
    NoSuchUser(String),
    #[error("user {user} has no session with handle {handle}")]
    NoSuchSession { user: String, handle: String },
    #[error("{0}")]
    Runtime(#[from] std::io::Error),
}

/// Runs the command; the lines to print.
pub fn run(cmd: &SessionsCommand) -> Result<Vec<String>, SessionsError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cmd))
}

async fn run_async(cmd: &SessionsCommand) -> Result<Vec<String>, SessionsError> {
    let (user, config, json) = match cmd {
        SessionsCommand::List { user, config, json }
        | SessionsCommand::Revoke {
            user, config, json, ..
        } => (user, config, *json),
    };
    let cfg = AuthConfig::from_path(config)?;
    let store: Arc<dyn SessionStore> =
        Arc::new(RedisSessionStore::new(&cfg.redis).map_err(|e| SessionsError::Start(e.into()))?);
    let user_id = resolve_user(&cfg, user).await?;
    let sessions = Sessions::new(store, &cfg.session, &cfg.trusted_proxies);
    match cmd {
        SessionsCommand::List { .. } => {
            let list = sessions.list(&user_id, None).await?;
            Ok(if json {
                vec![serde_json::json!({ "user_id": user_id, "sessions": list }).to_string()]
            } else {
                table(&user_id, &list)
            })
        }
        SessionsCommand::Revoke { session, .. } => {
            let revoked = match session {
                Some(handle) => {
                    if !sessions.end(&user_id, handle).await? {
                        return Err(SessionsError::NoSuchSession {
                            user: user_id,
                            handle: handle.clone(),
                        });
                    }
                    1
                }
                None => sessions.revoke_user(&user_id).await?,
            };
            tracing::info!(user = %user_id, revoked, "sessions revoked by an operator");
            Ok(vec![if json {
                serde_json::json!({ "user_id": user_id, "revoked": revoked }).to_string()
            } else {
                format!("revoked {revoked} session(s) of user {user_id}")
            }])
        }
    }
}

/// A user id as given, or the id of the account with that email.
async fn resolve_user(cfg: &AuthConfig, user: &str) -> Result<String, SessionsError> {
    if !user.contains('@') {
        return Ok(user.to_owned());
    }
    let store =
        Arc::new(RedisSessionStore::new(&cfg.redis).map_err(|e| SessionsError::Start(e.into()))?);
    let gate = authflow_auth::api::mail_gate(cfg, store);
    let users = users_from_config(cfg, gate, pages_from_config(cfg)?).await?;
    users
        .provider
        .user_id_of(user)
        .await
        .map_err(|e| SessionsError::Api(e.into()))?
        .ok_or_else(|| SessionsError::NoSuchUser(user.to_owned()))
}

/// One line per session, aligned, times in UTC.
fn table(user_id: &str, list: &[SessionView]) -> Vec<String> {
    let mut out = vec![format!("user {user_id}: {} session(s)", list.len())];
    if list.is_empty() {
        return out;
    }
    out.push(format!(
        "{:<16}  {:<24}  {:<18}  {:<20}  {:<20}",
        "HANDLE", "DEVICE", "ADDRESS", "CREATED (UTC)", "LAST SEEN (UTC)"
    ));
    for s in list {
        out.push(format!(
            "{:<16}  {:<24}  {:<18}  {:<20}  {:<20}",
            s.handle,
            s.device,
            s.ip.as_deref().unwrap_or("-"),
            utc(s.created_at),
            utc(s.last_seen_at)
        ));
    }
    out
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_083_200_000), "2026-12-01 00:00:00");
        assert_eq!(utc(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03");
    }
}
