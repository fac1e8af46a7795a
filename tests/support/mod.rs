//! Test harness: real processes on free loopback ports, stopped on drop. Each file holds one
//! concern:
//!
//! - [`process`]: free ports, waiting for a port or a health check, the `authflow` binary.
//! - [`redis`], [`sentinel`], [`cluster`], [`postgres`], [`smtp`], [`upstream`], [`nginx`]:
//!   the real dependencies a test starts.
//! - [`configs`]: gateway and auth configs as typed values (tests change fields, the harness
//!   serializes them), so a renamed key is a compile error, not a silent no-op.
//! - [`services`]: `authflow gateway`, `authflow auth` and `authflow up` as running processes.
//! - [`client`]: HTTP clients and helpers for reading responses.
//! - [`browser`]: a cookie-keeping browser for the provider sign-in flows.
//! - [`sessions`]: sessions written the way the auth service writes them.
//! - [`mail`]: reading the auth service's outbox.
//! - [`gotrue`]: the Supabase Auth (GoTrue) stand-in.
//! - [`oidc`]: a real OpenID provider (`oidc-provider` under Node) with forged-token hooks.
//! - [`github`]: the GitHub OAuth app and REST API stand-in.
//! - [`file_server`]: Python's `http.server` on a directory, the lenient upstream.
//! - [`otlp`]: an OTLP/HTTP receiver that keeps the spans the services export.
//! - [`tls`]: a self-signed certificate for the TLS listener.
//! - [`raw_upstream`]: an upstream that records the bytes of every request it receives.
//! - [`grpc`]: a real gRPC server (grpc-js, h2c) to put behind the gateway, and a grpc-js
//!   client call in front of it.
//! - [`websocket`]: a WebSocket echo server (`ws`) and a raw RFC 6455 client.
//! - [`node_peer`]: running the Node scripts of `tests/support/peers/` that those two use.
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod client;
pub mod cluster;
pub mod configs;
pub mod file_server;
pub mod github;
pub mod gotrue;
pub mod grpc;
pub mod mail;
pub mod nginx;
pub mod node_peer;
pub mod oidc;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod raw_upstream;
pub mod redis;
pub mod sentinel;
pub mod services;
pub mod sessions;
pub mod smtp;
pub mod tls;
pub mod upstream;
pub mod websocket;

pub use client::*;
pub use cluster::Cluster;
pub use configs::*;
pub use file_server::FileServer;
pub use grpc::{grpc_call, GrpcReply, GrpcServer};
pub use mail::*;
pub use nginx::Nginx;
pub use otlp::OtlpReceiver;
pub use postgres::Postgres;
pub use process::*;
pub use raw_upstream::RawUpstream;
pub use redis::Redis;
pub use sentinel::Sentinels;
pub use services::{AuthService, Gateway, Up};
pub use sessions::*;
pub use smtp::SmtpSink;
pub use tls::{private_pki, self_signed};
pub use upstream::Upstream;
pub use websocket::{HttpRefusal, WsClient, WsEcho};
