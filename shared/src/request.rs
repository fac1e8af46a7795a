//! Reading what clients send, the same way in both services: whether a browser wants a page,
//! query strings, and percent-encoding of values put into URLs. Decoding and encoding are the
//! `form_urlencoded` / `percent-encoding` crates' (WHATWG rules), not hand-written.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What stays unescaped in a query value we build: unreserved characters and `/`, so that a
/// `next=/app/x` stays readable.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// `value` percent-encoded for use as one query parameter value.
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// The first value of `name` in a query string or form body, decoded (`+` is a space).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Every pair of a query string or form body, decoded.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// Whether a GET from a browser asks for a page (some `Accept` value names `text/html`);
/// such requests get redirects and pages, others JSON.
pub fn wants_html<'a>(is_get: bool, accept: impl IntoIterator<Item = &'a str>) -> bool {
    is_get && accept.into_iter().any(|v| v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        assert_eq!(
            encode_query_value("/app/x?a=1&b=2"),
            "/app/x%3Fa%3D1%26b%3D2"
        );
        let q = format!("next={}&x=1", encode_query_value("/a b/ü?&="));
        assert_eq!(query_param(Some(&q), "next").as_deref(), Some("/a b/ü?&="));
        assert_eq!(query_param(Some("a=1+2%2F"), "a").as_deref(), Some("1 2/"));
        assert_eq!(query_param(Some("a=%zz%4"), "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param(None, "a"), None);
    }

    #[test]
    fn html_is_wanted_by_browser_gets_only() {
        assert!(wants_html(true, ["text/html,application/xhtml+xml"]));
        assert!(!wants_html(false, ["text/html"]));
        assert!(!wants_html(true, ["application/json"]));
    }
}
