//! What a request ended in, as one closed set: the label of the requests metric and the
//! `decision` field of the access log. Every value is registered with the metric up front.

/// The gateway's decision about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Passed every step and went upstream.
    Forwarded,
    /// A forward-auth check found a valid session: 200 to the proxy that asked.
    Verified,
    /// The path or host could not be made canonical (dot segments, encoded separators, `;`
    /// parameters, no `Host`): 400.
    BadRequest,
    /// Headers (431) or body (413) over `[limits]`.
    TooLarge,
    /// Answered by the gateway's own `/health`.
    Health,
    /// The public key of the signed identity (`/.well-known/jwks.json`).
    Jwks,
    /// Over a rate limit: 429.
    RateLimited,
    /// No route matches: 404.
    NoRoute,
    /// A protected route without a valid session: 302 or 401.
    Unauthenticated,
    /// A valid session without what the route demands (its roles): 403.
    Forbidden,
    /// A valid session without the (fresh enough) second factor the route demands: 302 to
    /// the second-factor page or 401 `mfa_required`.
    MfaRequired,
    /// The session store could not answer: 503 (fail closed).
    StoreUnavailable,
    /// The upstream failed or timed out: 502 or 504.
    UpstreamError,
    /// `OPTIONS *`, answered by the gateway.
    ServerOptions,
    /// A method the route does not allow (`TRACE`): 405.
    MethodNotAllowed,
}

impl Decision {
    pub const ALL: [Decision; 15] = [
        Decision::Forwarded,
        Decision::Verified,
        Decision::BadRequest,
        Decision::TooLarge,
        Decision::Health,
        Decision::Jwks,
        Decision::RateLimited,
        Decision::NoRoute,
        Decision::Unauthenticated,
        Decision::Forbidden,
        Decision::MfaRequired,
        Decision::StoreUnavailable,
        Decision::UpstreamError,
        Decision::ServerOptions,
        Decision::MethodNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Forwarded => "forwarded",
            Decision::Verified => "verified",
            Decision::BadRequest => "bad_request",
            Decision::TooLarge => "too_large",
            Decision::Health => "health",
            Decision::Jwks => "jwks",
            Decision::RateLimited => "rate_limited",
            Decision::NoRoute => "no_route",
            Decision::Unauthenticated => "unauthenticated",
            Decision::Forbidden => "forbidden",
            Decision::MfaRequired => "mfa_required",
            Decision::StoreUnavailable => "store_unavailable",
            Decision::UpstreamError => "upstream_error",
            Decision::ServerOptions => "server_options",
            Decision::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// Index into [`Decision::ALL`], for the pre-registered metric children.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_decision_at_its_index() {
        for (i, d) in Decision::ALL.iter().enumerate() {
            assert_eq!(d.index(), i, "{}", d.as_str());
        }
    }
}
