//! The AuthFlow auth service: accounts, sign-in sessions in Redis, password reset.
//!
//! A request goes: [`server`] (hyper) → [`http::ApiRequest`] → [`api`] (routes to an
//! [`endpoint::Endpoint`], reads its input) → [`flows`] (the account flow, which uses
//! [`sessions`], [`throttle`], [`credentials`] and a [`users`] provider) → a JSON answer, or
//! a redirect from [`forms`] when an HTML form asked. [`pages`] renders the HTML pages and
//! the mails from templates (branding, languages, operator overrides).
//!
//! - [`config`]: `auth.toml`, its environment variables and checks.
//! - [`error`]: every failure and the one status and body it maps to.
//! - [`password`], [`mail`], [`crypto`]: hashing, email, encryption at rest.

pub mod api;
pub mod build;
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod devices;
pub mod endpoint;
pub mod error;
pub mod flows;
pub mod forms;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod once;
pub mod pages;
pub mod password;
pub mod reload;
pub mod server;
pub mod sessions;
pub mod sso;
pub mod throttle;
pub mod users;
pub mod views;

pub use config::AuthConfig;
