//! `authflow users`: operators listing accounts of the built-in provider, granting and
//! revoking roles, disabling and enabling accounts. Each command changes the users database
//! first, then carries the change to every live session of the account in Redis: roles are
//! re-written into the session records (every gateway's cache tracks them, so the very next
//! request anywhere sees the change), a disable ends the sessions. If Redis fails after the
//! database changed, the command fails saying so; running it again finishes the job.

use authflow_auth::config::Provider;
use authflow_auth::server::StartError;
use authflow_auth::users::builtin;
use authflow_auth::users::roles::{Change, Directory, DirectoryError, UserView};
use authflow_auth::AuthConfig;
use authflow_shared::config::ConfigFile;
use authflow_shared::store::{RedisSessionStore, SessionStore, StoreError};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Every account: address, id, state, roles.
    List {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One account.
    Show {
        email: String,
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Give a role (`[A-Za-z0-9._:-]{1,64}`, at most 32 per account); live sessions get it
    /// on their next request.
    Grant {
        email: String,
        role: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Take a role away; live sessions lose it on their next request.
    Revoke {
        email: String,
        role: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// No more sign-in; every session of the account ends at once.
    Disable {
        email: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Sign-in allowed again.
    Enable {
        email: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{0}")]
    Config(#[from] authflow_shared::config::ConfigError),
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("{0}")]
    Directory(#[from] DirectoryError),
    #[error("`authflow users` manages the built-in provider's accounts; with provider = \"supabase\" set roles in app_metadata.roles")]
    NotBuiltin,
    #[error("{done}, but the live sessions were not updated ({source}): run the command again")]
    Sessions {
        done: String,
        #[source]
        source: StoreError,
    },
    #[error("{0}")]
    Runtime(#[from] std::io::Error),
}

impl UsersCommand {
    fn config(&self) -> &PathBuf {
        match self {
            UsersCommand::List { config, .. }
            | UsersCommand::Show { config, .. }
            | UsersCommand::Grant { config, .. }
            | UsersCommand::Revoke { config, .. }
            | UsersCommand::Disable { config, .. }
            | UsersCommand::Enable { config, .. } => config,
        }
    }
}

/// Runs the command; the lines to print.
pub fn run(cmd: &UsersCommand) -> Result<Vec<String>, UsersError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cmd))
}

async fn run_async(cmd: &UsersCommand) -> Result<Vec<String>, UsersError> {
    let cfg = AuthConfig::from_path(cmd.config())?;
    if cfg.provider != Provider::Builtin {
        return Err(UsersError::NotBuiltin);
    }
    let db = builtin::connect(
        &cfg.database.connect_url(),
        cfg.database.max_connections,
        cfg.database.acquire_timeout.0,
    )
    .await
    .map_err(StartError::from)?;
    let dir = Directory::new(db);
    match cmd {
        UsersCommand::List { json, .. } => {
            let users = dir.list().await?;
            Ok(if *json {
                vec![serde_json::json!({ "users": users }).to_string()]
            } else {
                table(&users)
            })
        }
        UsersCommand::Show { email, json, .. } => {
            let user = dir.show(email).await?;
            Ok(if *json {
                vec![serde_json::to_string(&user).unwrap_or_default()]
            } else {
                table(std::slice::from_ref(&user))
            })
        }
        UsersCommand::Grant { email, role, .. } => {
            let change = dir.grant(email, role).await?;
            let what = if change.changed {
                format!("granted {role} to {}", change.user.email)
            } else {
                format!("{} already has {role}", change.user.email)
            };
            propagate_roles(&cfg, &dir, &change, what).await
        }
        UsersCommand::Revoke { email, role, .. } => {
            let change = dir.revoke(email, role).await?;
            let what = if change.changed {
                format!("revoked {role} from {}", change.user.email)
            } else {
                format!("{} did not have {role}", change.user.email)
            };
            propagate_roles(&cfg, &dir, &change, what).await
        }
        UsersCommand::Disable { email, .. } => {
            let change = dir.set_disabled(email, true).await?;
            let u = &change.user;
            let what = if change.changed {
                format!("disabled {} ({})", u.email, u.user_id)
            } else {
                format!("{} was already disabled", u.email)
            };
            // Ended even when already disabled: a session that survived a failed run goes.
            let ended = store(&cfg)?
                .revoke_user(&u.user_id, None)
                .await
                .map_err(|source| UsersError::Sessions {
                    done: what.clone(),
                    source,
                })?;
            tracing::info!(user = %u.user_id, ended, "account disabled by an operator");
            Ok(vec![format!("{what}; {ended} session(s) ended")])
        }
        UsersCommand::Enable { email, .. } => {
            let change = dir.set_disabled(email, false).await?;
            let u = &change.user;
            tracing::info!(user = %u.user_id, "account enabled by an operator");
            Ok(vec![if change.changed {
                format!("enabled {} ({}): sign-in allowed", u.email, u.user_id)
            } else {
                format!("{} was not disabled", u.email)
            }])
        }
    }
}

/// Rounds of write-and-check before giving up (only commands racing without end need more).
const MAX_ROLE_WRITES: usize = 16;

fn store(cfg: &AuthConfig) -> Result<RedisSessionStore, UsersError> {
    RedisSessionStore::new(&cfg.redis).map_err(|e| UsersError::Start(e.into()))
}

/// Writes the account's roles into its live sessions (also when nothing changed in the
/// database, so a run that failed half way is finished by running it again).
async fn propagate_roles(
    cfg: &AuthConfig,
    dir: &Directory,
    change: &Change,
    what: String,
) -> Result<Vec<String>, UsersError> {
    let u = &change.user;
    let store = store(cfg)?;
    let failed = |source| UsersError::Sessions {
        done: what.clone(),
        source,
    };
    // Written, then read back from the database until what was written is what the database
    // says: another command running at the same time may have committed after this one read
    // its roles, and whichever writes last must write the final list (black-box review: a
    // grant racing a revoke left the revoked role in live sessions). Each command writes at
    // least once after its own change, so the last write is always checked against the
    // database after every change that came before it.
    let mut roles = u.roles.clone();
    let mut updated = 0;
    for _ in 0..MAX_ROLE_WRITES {
        updated = store.set_roles(&u.user_id, &roles).await.map_err(failed)?;
        let now = dir.roles_of(&u.user_id).await?;
        if now == roles {
            break;
        }
        roles = now;
    }
    tracing::info!(user = %u.user_id, roles = %roles.join(","), updated, "roles changed by an operator");
    Ok(vec![format!(
        "{what}; roles now: {}; {updated} live session(s) updated",
        roles_or_dash(&roles)
    )])
}

fn roles_or_dash(roles: &[String]) -> String {
    if roles.is_empty() {
        "-".into()
    } else {
        roles.join(",")
    }
}

/// One line per account, aligned.
fn table(users: &[UserView]) -> Vec<String> {
    let mut out = vec![format!(
        "{:<32}  {:<36}  {:<10}  ROLES",
        "EMAIL", "ID", "STATE"
    )];
    for u in users {
        let state = match (u.disabled_at, u.verified) {
            (Some(_), _) => "disabled",
            (None, true) => "active",
            (None, false) => "unverified",
        };
        out.push(format!(
            "{:<32}  {:<36}  {:<10}  {}",
            u.email,
            u.user_id,
            state,
            roles_or_dash(&u.roles)
        ));
    }
    out
}
