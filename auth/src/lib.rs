//! The AuthFlow auth service: accounts, sign-in sessions in Redis, password reset.
//!
//! - [`api`]: the HTTP endpoints and how each outcome maps to a response.
//! - [`users`]: where accounts live (built-in database or Supabase Auth).
//! - [`pages`], [`forms`]: the HTML pages and the no-JavaScript form flow.
//! - [`password`], [`mail`], [`crypto`]: hashing, email, encryption at rest.
//! - [`server`]: wiring a config into a running service.

pub mod api;
pub mod config;
pub mod crypto;
pub mod forms;
pub mod mail;
pub mod pages;
pub mod password;
pub mod server;
pub mod users;

pub use config::AuthConfig;
