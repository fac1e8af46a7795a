//! Prometheus metrics of the auth service, served on its private `metrics_listen` listener.
//!
//! Every labelled series is registered up front (bounded labels, each series present from
//! the first scrape), and the flows count through the small functions here, so no flow
//! knows about Prometheus.

use crate::error::ApiError;
use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    Histogram, IntCounter, IntCounterVec, IntGauge,
};
use std::sync::LazyLock;

/// Why sessions ended (other than by expiring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// `POST logout`.
    SignOut,
    /// A sign-in replaced the session the request presented (no fixation).
    Replaced,
    /// The owner ended one of their sessions ("Your devices").
    OwnerOne,
    /// The owner ended every session but the current one.
    OwnerOthers,
    /// The owner signed out everywhere.
    OwnerAll,
    /// A password change ended the account's other sessions.
    PasswordChange,
    /// A password reset ended every session of the account.
    PasswordReset,
    /// A sign-in went over `max_sessions_per_user`: the oldest ended.
    CapEvicted,
    /// Following a verification link set the account's password (the one chosen in the
    /// sign-up that sent it): every session of the account ended.
    EmailVerified,
}

impl Revocation {
    pub const ALL: [Revocation; 9] = [
        Revocation::SignOut,
        Revocation::Replaced,
        Revocation::OwnerOne,
        Revocation::OwnerOthers,
        Revocation::OwnerAll,
        Revocation::PasswordChange,
        Revocation::PasswordReset,
        Revocation::CapEvicted,
        Revocation::EmailVerified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::SignOut => "sign_out",
            Revocation::Replaced => "replaced_at_sign_in",
            Revocation::OwnerOne => "owner_one",
            Revocation::OwnerOthers => "owner_others",
            Revocation::OwnerAll => "owner_all",
            Revocation::PasswordChange => "password_change",
            Revocation::PasswordReset => "password_reset",
            Revocation::CapEvicted => "cap_evicted",
            Revocation::EmailVerified => "email_verified",
        }
    }
}

/// A registered counter family with every label value created up front.
fn family(name: &str, help: &str, label: &str, values: &[&str]) -> Option<IntCounterVec> {
    let vec = register_int_counter_vec!(name, help, &[label]).ok()?;
    for v in values {
        vec.with_label_values(&[v]);
    }
    Some(vec)
}

static REVOCATIONS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    let causes: Vec<&str> = Revocation::ALL.iter().map(|c| c.as_str()).collect();
    family(
        "authflow_auth_session_revocations_total",
        "Sessions ended by this auth service, by cause",
        "cause",
        &causes,
    )
});

/// Sign-in outcomes (label `result`).
const SIGN_IN_RESULTS: [&str; 6] = [
    "ok",
    "invalid_credentials",
    "locked",
    "email_not_verified",
    "unavailable",
    "refused",
];

static SIGN_INS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    family(
        "authflow_auth_sign_ins_total",
        "Sign-in attempts by result",
        "result",
        &SIGN_IN_RESULTS,
    )
});

static SIGN_UPS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    family(
        "authflow_auth_sign_ups_total",
        "Sign-up requests by result (accepted includes addresses already registered)",
        "result",
        &["accepted", "invalid", "unavailable", "refused"],
    )
});

static RESETS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    family(
        "authflow_auth_password_resets_total",
        "Password resets: links requested, passwords set, attempts refused",
        "step",
        &["requested", "completed", "refused"],
    )
});

static PASSWORD_CHANGES: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    family(
        "authflow_auth_password_changes_total",
        "Password changes by signed-in users, by result",
        "result",
        &["ok", "refused"],
    )
});

static LOCKOUTS: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    register_int_counter!(
        "authflow_auth_lockouts_total",
        "Sign-in attempts refused because the account was locked by the throttle"
    )
    .ok()
});

static MAIL: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    family(
        "authflow_auth_mail_total",
        "Mails by result: sent, failed (transport error), skipped (address in its cooldown)",
        "result",
        &["sent", "failed", "skipped"],
    )
});

static ARGON2_QUEUE: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    register_int_gauge!(
        "authflow_auth_argon2_queue_depth",
        "Password hash jobs waiting for or running on the argon2 threads"
    )
    .ok()
});

static ARGON2_SECONDS: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    register_histogram!(
        "authflow_auth_argon2_seconds",
        "Time of one password hash or verification, queueing included",
        vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    )
    .ok()
});

static ACTIVE_SESSIONS: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    register_int_gauge!(
        "authflow_auth_active_sessions",
        "Sessions active within the idle timeout, counted by a SCAN of their seen:* keys \
         (approximate: refreshed at most every 15 s on scrape; -1 until the first count)"
    )
    .ok()
    .inspect(|g| g.set(-1))
});

fn inc(vec: &LazyLock<Option<IntCounterVec>>, label: &str, by: u64) {
    if let Some(v) = vec.as_ref() {
        v.with_label_values(&[label]).inc_by(by);
    }
}

pub fn revoked(cause: Revocation, sessions: usize) {
    if sessions > 0 {
        inc(&REVOCATIONS, cause.as_str(), sessions as u64);
    }
}

/// The `result` label of a finished sign-in.
pub fn sign_in<T>(result: &Result<T, ApiError>) {
    let label = match result {
        Ok(_) => "ok",
        Err(ApiError::InvalidCredentials) => "invalid_credentials",
        Err(ApiError::AccountLocked(_)) => "locked",
        Err(ApiError::EmailNotVerified) => "email_not_verified",
        Err(ApiError::SessionStore(_) | ApiError::UserStore(_)) => "unavailable",
        Err(_) => "refused",
    };
    inc(&SIGN_INS, label, 1);
}

pub fn sign_up<T>(result: &Result<T, ApiError>) {
    let label = match result {
        Ok(_) => "accepted",
        Err(ApiError::Validation { .. }) => "invalid",
        Err(ApiError::SessionStore(_) | ApiError::UserStore(_)) => "unavailable",
        Err(_) => "refused",
    };
    inc(&SIGN_UPS, label, 1);
}

/// `step`: `requested` or `completed`/`refused` from the result of setting the password.
pub fn reset_requested() {
    inc(&RESETS, "requested", 1);
}

pub fn reset_finished<T>(result: &Result<T, ApiError>) {
    inc(
        &RESETS,
        if result.is_ok() {
            "completed"
        } else {
            "refused"
        },
        1,
    );
}

pub fn password_changed<T>(result: &Result<T, ApiError>) {
    inc(
        &PASSWORD_CHANGES,
        if result.is_ok() { "ok" } else { "refused" },
        1,
    );
}

static REBINDS: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    register_int_counter!(
        "authflow_auth_session_rebinds_total",
        "Sessions put aside by a request from another device (on_fingerprint_mismatch = \"reauth\") and re-bound to it by a sign-in"
    )
    .ok()
});

pub fn rebound() {
    if let Some(c) = REBINDS.as_ref() {
        c.inc();
    }
}

pub fn locked_out() {
    if let Some(c) = LOCKOUTS.as_ref() {
        c.inc();
    }
}

/// `result`: `sent`, `failed` or `skipped`.
pub fn mail(result: &'static str) {
    inc(&MAIL, result, 1);
}

/// Counts one password hash job from queueing to its end (drop).
pub struct Argon2Job {
    started: std::time::Instant,
}

impl Argon2Job {
    pub fn start() -> Self {
        if let Some(g) = ARGON2_QUEUE.as_ref() {
            g.inc();
        }
        Argon2Job {
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Argon2Job {
    fn drop(&mut self) {
        if let Some(g) = ARGON2_QUEUE.as_ref() {
            g.dec();
        }
        if let Some(h) = ARGON2_SECONDS.as_ref() {
            h.observe(self.started.elapsed().as_secs_f64());
        }
    }
}

pub fn set_active_sessions(n: i64) {
    if let Some(g) = ACTIVE_SESSIONS.as_ref() {
        g.set(n);
    }
}

/// Config reloads by result (`ok`, `error`: the running config stayed).
static RELOADS: LazyLock<Option<prometheus::IntCounterVec>> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "authflow_auth_config_reloads_total",
        "Config reloads by result (ok, error: the running config stayed)",
        &["result"]
    )
    .ok()
    .inspect(|v| {
        v.with_label_values(&["ok"]);
        v.with_label_values(&["error"]);
    })
});

pub fn reloaded(ok: bool) {
    if let Some(v) = RELOADS.as_ref() {
        v.with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }
}

/// Registers every family, so that a scrape before any traffic shows them all.
pub fn register_all() {
    authflow_shared::metrics::build_info();
    LazyLock::force(&RELOADS);
    LazyLock::force(&REVOCATIONS);
    LazyLock::force(&SIGN_INS);
    LazyLock::force(&SIGN_UPS);
    LazyLock::force(&RESETS);
    LazyLock::force(&PASSWORD_CHANGES);
    LazyLock::force(&LOCKOUTS);
    LazyLock::force(&REBINDS);
    LazyLock::force(&MAIL);
    LazyLock::force(&ARGON2_QUEUE);
    LazyLock::force(&ARGON2_SECONDS);
    LazyLock::force(&ACTIVE_SESSIONS);
}

/// Keeps `authflow_auth_active_sessions` fresh on scrape: a new count when the last is older
/// than [`ACTIVE_REFRESH`] (one at a time; a failed count keeps the last figure).
pub struct ActiveSessions {
    store: std::sync::Arc<dyn authflow_shared::store::SessionStore>,
    last: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// How old the active-session figure may get before a scrape counts again.
pub const ACTIVE_REFRESH: std::time::Duration = std::time::Duration::from_secs(15);

impl ActiveSessions {
    pub fn new(store: std::sync::Arc<dyn authflow_shared::store::SessionStore>) -> Self {
        ActiveSessions {
            store,
            last: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn refresh(&self) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|t| t.elapsed() < ACTIVE_REFRESH) {
            return;
        }
        match self.store.count_active().await {
            Ok(n) => {
                set_active_sessions(i64::try_from(n).unwrap_or(i64::MAX));
                *last = Some(std::time::Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "active sessions not counted"),
        }
    }
}

pub use authflow_shared::metrics::render;

/// Provider sign-in outcomes (`result`): `ok`, `linked`, `link_required`, or why it failed
/// ([`crate::sso::SsoError::reason`] and the account checks' codes). Labelled by provider
/// id, which the config bounds.
static SSO_SIGN_INS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        "authflow_auth_sso_sign_ins_total",
        "Sign-ins through an external provider, by provider and result",
        &["provider", "result"]
    )
    .ok()
});

/// Counts one provider sign-in outcome.
pub fn sso_sign_in(provider: &str, result: &str) {
    if let Some(v) = SSO_SIGN_INS.as_ref() {
        v.with_label_values(&[provider, result]).inc();
    }
}

/// Second-factor checks by method (`totp`, `recovery_code`, `totp_enroll`) and result.
static MFA: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        "authflow_auth_mfa_total",
        "Second-factor checks by method and result",
        &["method", "result"]
    )
    .ok()
});

/// Counts one second-factor check.
pub fn mfa<T>(method: &str, result: &Result<T, ApiError>) {
    let label = match result {
        Ok(_) => "ok",
        Err(ApiError::InvalidCode) => "invalid_code",
        Err(ApiError::AccountLocked(_)) => "locked",
        Err(ApiError::SessionStore(_) | ApiError::UserStore(_)) => "unavailable",
        Err(_) => "refused",
    };
    if let Some(v) = MFA.as_ref() {
        v.with_label_values(&[method, label]).inc();
    }
}
