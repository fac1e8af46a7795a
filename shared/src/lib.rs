//! What the gateway and the auth service must agree on, defined once.
//!
//! - [`keys`]: the Redis key schema (with Cluster hash tags) and default TTLs.
//! - [`digest`]: SHA-256 in hex, for ids and stored one-time tokens.
//! - [`token`]: how session tokens are made and checked, and how a token maps to its store id.
//! - [`session`]: the session record kept under `session:{id}`.
//! - [`fingerprint`]: the device fingerprint function.
//! - [`store`]: the session store trait and its Redis implementation.
//! - [`cookie`]: reading the session cookie and writing `Set-Cookie` for it.
//! - [`client_ip`]: who the client is, given the socket peer and `X-Forwarded-For`.
//! - [`contract`]: the `[session]` settings both config files share, as one type.
//! - [`config`]: config primitives and the one loader (defaults, file, environment, flags).
//! - [`roles`]: role names (what is accepted) and the `X-User-Roles` form.
//! - [`request`]: reading what clients send (HTML or JSON wanted, query strings, encoding).

pub mod client_ip;
pub mod config;
pub mod contract;
pub mod cookie;
pub mod digest;
pub mod fingerprint;
pub mod keys;
pub mod metrics;
pub mod otel;
pub mod request;
pub mod roles;
pub mod session;
pub mod store;
pub mod token;
pub mod trace;

/// Milliseconds since the Unix epoch. Session timestamps use this unit so that short
/// timeouts (tests, strict deployments) are enforced precisely.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch: the resolution of the revoke mark and of a sign-in's
/// start, so that the two are ordered even when they fall in the same millisecond.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
