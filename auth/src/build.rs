//! Builds the service from a validated config: the pages and mail templates (loaded and
//! checked first: a broken template refuses the start or the reload), the user provider
//! (database, hashing, mail, or Supabase) and the API around the Redis session store. Used
//! at start and by a reload.

use crate::api::{Api, Users};
use crate::config::{AuthConfig, Provider};
use crate::mail::{MailError, MailGate, Mailer};
use crate::pages::templates::TemplateErrors;
use crate::pages::Pages;
use crate::password::{HashError, PasswordHasherPool};
use crate::users::builtin::{self, BuiltinUsers, DbError};
use crate::users::supabase::{SupabaseSetupError, SupabaseUsers};
use authflow_shared::store::{RedisSessionStore, SessionStore, StoreError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("supabase: {0}")]
    Supabase(#[from] SupabaseSetupError),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("pages:\n{0}")]
    Pages(#[from] TemplateErrors),
}

/// The pages and mails of `cfg`, every template rendered in every language once; their
/// warnings (catalogue gaps, low contrast) are logged.
pub fn pages_from_config(cfg: &AuthConfig) -> Result<Arc<Pages>, StartError> {
    let mut pages = Pages::new(&cfg.pages, cfg.public_url())?;
    let buttons = cfg
        .identity
        .providers
        .iter()
        .map(|p| (p.id.clone(), p.display_name().to_owned()))
        .collect();
    pages.set_sign_in(cfg.identity.password, buttons);
    let passkeys = cfg.mfa.required != crate::mfa::Required::Never && cfg.mfa.webauthn.enabled();
    pages.set_passkeys(passkeys, cfg.mfa.webauthn.passwordless);
    for w in pages.warnings() {
        tracing::warn!("{w}");
    }
    Ok(Arc::new(pages))
}

/// The user provider the config asks for; its mails go through `mail_gate` and are
/// rendered with `pages`.
pub async fn users_from_config(
    cfg: &AuthConfig,
    mail_gate: MailGate,
    pages: Arc<Pages>,
) -> Result<Users, StartError> {
    match cfg.provider {
        Provider::Builtin => {
            let db = builtin::connect(
                &cfg.database.connect_url(),
                cfg.database.max_connections,
                cfg.database.acquire_timeout.0,
            )
            .await?;
            let p = &cfg.password;
            let hasher = PasswordHasherPool::new(
                p.argon2_memory_kib,
                p.argon2_iterations,
                p.argon2_parallelism,
            )?;
            let mailer = Arc::new(Mailer::new(&cfg.mail, cfg.public_url(), mail_gate, pages)?);
            let builtin = Arc::new(BuiltinUsers::new(
                db,
                hasher,
                mailer,
                cfg.signup.require_email_verification,
                cfg.signup.verification_ttl.0,
                p.reset_token_ttl.0,
            ));
            Ok(Users {
                provider: builtin.clone(),
                builtin: Some(builtin),
            })
        }
        Provider::Supabase => {
            let sb = cfg
                .supabase
                .as_ref()
                .ok_or_else(|| StartError::Config("[supabase] section missing".into()))?;
            Ok(Users {
                provider: Arc::new(SupabaseUsers::new(sb)?),
                builtin: None,
            })
        }
    }
}

/// The API with the Redis session store, connected.
pub async fn api_from_config(cfg: &AuthConfig) -> Result<Api, StartError> {
    let pages = pages_from_config(cfg)?;
    let redis = RedisSessionStore::new(&cfg.redis)?;
    if !redis.warm_up().await {
        tracing::warn!("Redis is not reachable yet: sign-in answers 503 until it is");
    }
    let redis = Arc::new(redis);
    let store: Arc<dyn SessionStore> = redis.clone();
    let gate = crate::api::mail_gate(cfg, redis.clone());
    let users = users_from_config(cfg, gate, pages.clone()).await?;
    Api::new(cfg, users, store, redis, pages).map_err(StartError::Config)
}
