//! The AuthFlow auth service: accounts, sign-in sessions in Redis, password reset.
//!
//! - [`api`]: the HTTP endpoints and how each outcome maps to a response.
//! - [`users`]: where accounts live (built-in database or Supabase Auth).
//! - [`password`], [`mail`], [`crypto`]: hashing, email, encryption at rest.
//! - [`server`]: wiring a config into a running service.

pub mod api;
pub mod config;
pub mod crypto;
pub mod mail;
pub mod password;
pub mod server;
pub mod users;

pub use config::AuthConfig;
