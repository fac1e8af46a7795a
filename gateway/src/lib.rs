//! The AuthFlow gateway: a Pingora proxy that checks rate limits, sessions and device
//! fingerprints before it picks an upstream.
//!
//! Start at [`proxy`]: its `request_filter` is the policy, step by step.

pub mod access;
pub mod admin;
pub mod breaker;
pub mod canonical;
pub mod config;
pub mod decision;
pub mod forward_auth;
pub mod gcra;
pub mod grpc;
pub mod headers;
pub mod health;
pub mod identity_jwt;
pub mod in_flight;
pub mod live;
pub mod memo;
pub mod message;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod proxy;
pub mod rate_limit;
pub mod reload;
pub mod response;
pub mod route;
pub mod server;
pub mod session;
pub mod session_cache;
pub mod stream_resets;
pub mod target;
pub mod unknown_cookies;
pub mod upstream;

pub use config::GatewayConfig;
