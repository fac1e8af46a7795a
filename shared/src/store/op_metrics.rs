//! Latency and failures of each Redis store operation, for both services:
//! `authflow_redis_operation_duration_seconds{operation}` and
//! `authflow_redis_operation_errors_total{operation,kind}` (`kind`: `error` when Redis or the
//! connection failed, `timeout` when no answer came within the configured timeout). An
//! operation is one store call (a script, a pipeline or a command), named for what it does,
//! so the labels are a closed set.

use std::sync::LazyLock;

/// The store operations that reach Redis.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Lookup,
    /// The gateway's tracked re-read of a found session ([`super::SessionFeed::track`]).
    Track,
    Touch,
    Create,
    Delete,
    RevokeUser,
    ListUser,
    Ping,
    RateLimit,
    LoginAttempt,
    ClearAttempts,
    MailCooldown,
    CountActive,
    ShortLived,
}

impl Op {
    const ALL: [Op; 14] = [
        Op::Lookup,
        Op::Track,
        Op::Touch,
        Op::Create,
        Op::Delete,
        Op::RevokeUser,
        Op::ListUser,
        Op::Ping,
        Op::RateLimit,
        Op::LoginAttempt,
        Op::ClearAttempts,
        Op::MailCooldown,
        Op::CountActive,
        Op::ShortLived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lookup => "session_lookup",
            Op::Track => "session_track",
            Op::Touch => "session_touch",
            Op::Create => "session_create",
            Op::Delete => "session_delete",
            Op::RevokeUser => "sessions_revoke",
            Op::ListUser => "sessions_list",
            Op::Ping => "ping",
            Op::RateLimit => "rate_limit",
            Op::LoginAttempt => "login_attempt",
            Op::ClearAttempts => "login_attempts_clear",
            Op::MailCooldown => "mail_cooldown",
            Op::CountActive => "sessions_count",
            Op::ShortLived => "short_lived",
        }
    }
}

/// How an operation failed.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    Error,
    Timeout,
}

struct Series {
    duration: prometheus::Histogram,
    error: prometheus::IntCounter,
    timeout: prometheus::IntCounter,
}

/// One set of series per operation, in [`Op::ALL`]'s order, made up front so that every
/// series exists from the first scrape and an operation does no label lookup.
static SERIES: LazyLock<Option<Vec<Series>>> = LazyLock::new(|| {
    let duration = prometheus::register_histogram_vec!(
        "authflow_redis_operation_duration_seconds",
        "Redis store operations: time to the answer (or to the failure)",
        &["operation"],
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]
    )
    .ok()?;
    let errors = prometheus::register_int_counter_vec!(
        "authflow_redis_operation_errors_total",
        "Redis store operations that failed, by kind (error, timeout)",
        &["operation", "kind"]
    )
    .ok()?;
    Some(
        Op::ALL
            .iter()
            .map(|op| Series {
                duration: duration.with_label_values(&[op.as_str()]),
                error: errors.with_label_values(&[op.as_str(), "error"]),
                timeout: errors.with_label_values(&[op.as_str(), "timeout"]),
            })
            .collect(),
    )
});

/// Records one operation's time and, when it failed, how.
pub fn observe(op: Op, seconds: f64, failure: Option<Failure>) {
    let Some(s) = SERIES.as_ref().and_then(|all| all.get(op as usize)) else {
        return;
    };
    s.duration.observe(seconds);
    match failure {
        Some(Failure::Error) => s.error.inc(),
        Some(Failure::Timeout) => s.timeout.inc(),
        None => {}
    }
}

/// The failure of a timed operation's result (outer: the timeout, inner: Redis).
pub fn failure_of<T, E, X>(result: &Result<Result<T, E>, X>) -> Option<Failure> {
    match result {
        Ok(Ok(_)) => None,
        Ok(Err(_)) => Some(Failure::Error),
        Err(_) => Some(Failure::Timeout),
    }
}

/// Registers the families (a process that uses Redis calls this at start).
pub fn register() {
    LazyLock::force(&SERIES);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_of_all_is_the_order_of_the_enum() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{}", op.as_str());
        }
    }
}
