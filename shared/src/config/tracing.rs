//! `[tracing]`: distributed tracing, the same table in `gateway.toml` and `auth.toml`.
//! Trace context (W3C `traceparent`) is always passed on and logged; spans are exported over
//! OTLP/HTTP only when `otlp_endpoint` is set.

use super::validate::{Problems, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The OTLP/HTTP collector, e.g. `"http://otel-collector:4318"` (`/v1/traces` is
    /// appended unless the URL already ends with it); no export when unset.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default: `authflow-gateway` / `authflow-auth`).
    pub service_name: Option<String>,
    /// Whose `traceparent` the gateway continues: `"trusted"` (from `trusted_proxies` only,
    /// the default), `"all"` or `"none"`; anyone else's is replaced by a new trace. The auth
    /// service, reached only through the gateway, always continues the gateway's.
    pub accept_traceparent: AcceptTraceparent,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceptTraceparent {
    #[default]
    Trusted,
    All,
    None,
}

impl TracingConfig {
    /// The collector's traces URL.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        })
    }
}

impl Validate for TracingConfig {
    fn validate(&self, p: &mut Problems) {
        if let Some(url) = &self.otlp_endpoint {
            match url.parse::<http::Uri>() {
                Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                }
                _ => p.add("otlp_endpoint", format!("{url:?} is not an http(s) URL")),
            }
        }
        if self.service_name.as_deref().is_some_and(str::is_empty) {
            p.add("service_name", "must not be empty");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_appended_once() {
        let cfg = |u: &str| TracingConfig {
            otlp_endpoint: Some(u.into()),
            ..Default::default()
        };
        assert_eq!(
            cfg("http://c:4318").traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            cfg("http://c:4318/v1/traces").traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(TracingConfig::default().traces_url(), None);
    }
}
