//! `[mfa]` and `[mfa.webauthn]`: whether accounts have second factors, the key that seals
//! them, and where passkeys are bound. Checked here, where they enter; used by
//! [`crate::mfa`].

use crate::crypto::TokenCipher;
use authflow_shared::config::{Problems, Secret, Validate};
use serde::{Deserialize, Serialize};

/// The environment variable holding the key that seals TOTP secrets and keys recovery-code
/// hashes (32 bytes, base64; also `_FILE`).
pub const ENV_MFA_KEY: &str = "AUTHFLOW_MFA_KEY";

/// Whether accounts have a second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Required {
    /// No second factors (the endpoints answer 404).
    #[default]
    Never,
    /// Each person may enrol one; then every sign-in needs it.
    Optional,
    /// Every account must enrol at its next sign-in, before any session.
    Always,
}

/// `[mfa]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaConfig {
    pub required: Required,
    /// The name authenticator apps show; `[pages] product_name` when unset.
    pub issuer: Option<String>,
    /// From `AUTHFLOW_MFA_KEY`.
    #[serde(skip_serializing)]
    pub key: Secret,
    /// Passkeys (`[mfa.webauthn]`): offered when `rp_id` is set.
    pub webauthn: WebauthnConfig,
}

impl Validate for MfaConfig {
    fn validate(&self, p: &mut Problems) {
        p.section("webauthn", &self.webauthn);
        if self.required == Required::Never {
            return;
        }
        if let Err(e) = TokenCipher::from_base64(self.key.expose()) {
            p.add(
                "required",
                format!("second factors need a key: {e} (set {ENV_MFA_KEY} or {ENV_MFA_KEY}_FILE)"),
            );
        }
    }
}

/// `[mfa.webauthn]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnConfig {
    /// The relying party id: the domain passkeys are bound to (`example.com` serves
    /// `login.example.com`). Passkeys are offered when this is set. It can never change
    /// without every passkey becoming useless.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_id: Option<String>,
    /// The origins the browser may run the ceremony on (`https://login.example.com`); each
    /// host is `rp_id` or below it. Empty: the config's `public_url`.
    pub origins: Vec<String>,
    /// The name authenticators show; `[pages] product_name` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_name: Option<String>,
    /// A passkey alone signs in (no password first): a discoverable credential with user
    /// verification. See `Proof::Passwordless` in `crate::mfa`.
    pub passwordless: bool,
}

/// Whether browsers treat `host` as a secure context over plain http.
fn is_local_host(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// Whether `host` is `rp_id` or a subdomain of it.
pub fn host_within(host: &str, rp_id: &str) -> bool {
    host == rp_id || host.ends_with(&format!(".{rp_id}"))
}

impl WebauthnConfig {
    /// Whether passkeys are configured at all.
    pub fn enabled(&self) -> bool {
        self.rp_id.is_some()
    }
}

impl Validate for WebauthnConfig {
    /// The RP ID is a lowercase domain (WebAuthn refuses IP addresses), each origin an
    /// http(s) origin (http only on localhost, where browsers allow WebAuthn) whose host is
    /// the RP ID or below it. Whether the RP ID fits `public_url` is checked with the whole
    /// config ([`crate::config::AuthConfig`]).
    fn validate(&self, p: &mut Problems) {
        let Some(rp_id) = &self.rp_id else {
            if self.passwordless {
                p.add("passwordless", "needs rp_id (passkeys are off without it)");
            }
            if !self.origins.is_empty() {
                p.add("origins", "mean nothing without rp_id");
            }
            return;
        };
        let domain = url::Host::parse(rp_id);
        match domain {
            Ok(url::Host::Domain(d)) if d == *rp_id && !rp_id.ends_with('.') => {}
            Ok(url::Host::Domain(_)) => p.add(
                "rp_id",
                format!("{rp_id:?}: a lowercase domain without a trailing dot"),
            ),
            Ok(_) => p.add(
                "rp_id",
                format!("{rp_id:?}: an IP address is no valid RP ID; use a domain name"),
            ),
            Err(e) => p.add("rp_id", format!("{rp_id:?}: {e}")),
        }
        for (i, origin) in self.origins.iter().enumerate() {
            let key = format!("origins[{i}]");
            let Some(u) = crate::config::parse_url(origin, &["https", "http"]) else {
                p.add(&key, format!("{origin:?} is not an http(s) URL"));
                continue;
            };
            let host = u.host_str().unwrap_or("");
            if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
                p.add(
                    &key,
                    format!("{origin:?}: an origin only (scheme, host, port), no path"),
                );
            }
            if u.scheme() == "http" && !is_local_host(host) {
                p.add(
                    &key,
                    format!("{origin:?}: browsers run WebAuthn over http only on localhost; use https://"),
                );
            }
            if !host_within(host, rp_id) {
                p.add(
                    &key,
                    format!("{origin:?}: its host {host:?} is not {rp_id:?} or below it"),
                );
            }
        }
        if self.rp_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            p.add("rp_name", "is empty: leave it out for the product name");
        }
    }
}
