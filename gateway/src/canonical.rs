//! One canonical form of the request's path and host, computed once per request and used for
//! everything after it: routing, the auth decision, rate-limit rules, and what is forwarded
//! upstream. An upstream that decodes `%XX`, merges slashes or treats `;` as a parameter
//! separator then sees the same path the gateway judged, and what cannot be made canonical is
//! refused with 400 before any of those steps.

use std::fmt;

/// Why a path or host was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not starting with `/`.
    NotAbsolute,
    /// A request-target that is not origin-form (`/...`), `http(s)` absolute-form, or `*`
    /// with `OPTIONS` (RFC 9112 §3.2): `app/x`, `%2Fapp`, `x:/app`, an authority. Pingora
    /// keeps such bytes for the wire and routes them as `/`, so they are never autocorrected.
    TargetForm,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// An encoded `/`, `\` or NUL: the upstream could split segments where the gateway did not.
    EncodedSeparator,
    /// A raw `\`, a control or non-ASCII byte.
    BadByte,
    /// A `;` path parameter (`/app;x/`, `..;/`): Tomcat and Spring strip them, so the path
    /// they route is not the one the gateway saw.
    PathParameter,
    /// A `.` or `..` segment, also when percent-encoded.
    DotSegment,
    /// A segment that starts or ends with an encoded space (`/admin%20`): IIS, Windows file
    /// names and path matchers that trim tokens read it as the segment without the space.
    /// Pingora 0.9 also escapes a raw space it finds in a malformed request line
    /// (`GET /admin  HTTP/1.1` becomes `/admin%20`) before the gateway sees the target.
    EdgeSpace,
    /// A segment ending in `.` (`/admin./x`): Windows and IIS drop trailing dots.
    TrailingDot,
    /// `%25` followed by two hex digits (`%252e`): an upstream that decodes twice sees another
    /// path than the gateway judged.
    DoubleEncoding,
    /// Escapes that do not decode to UTF-8, overlong forms included (`%C0%AF` for `/`): some
    /// decoders map them to the character they spell out.
    InvalidUtf8,
    /// An HTTP/1.1 request without `Host`, or with several.
    MissingHost,
    /// A `Host` that is not a host name or address with an optional port.
    BadHost,
}

impl Rejection {
    /// The `reason` in the 400 body.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::NotAbsolute => "path_not_absolute",
            Rejection::TargetForm => "request_target_form",
            Rejection::BadEscape => "bad_percent_escape",
            Rejection::EncodedSeparator => "encoded_separator",
            Rejection::BadByte => "bad_character",
            Rejection::PathParameter => "path_parameter",
            Rejection::DotSegment => "dot_segment",
            Rejection::EdgeSpace => "segment_edge_space",
            Rejection::TrailingDot => "segment_trailing_dot",
            Rejection::DoubleEncoding => "double_encoding",
            Rejection::InvalidUtf8 => "invalid_utf8_escape",
            Rejection::MissingHost => "missing_host",
            Rejection::BadHost => "bad_host",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accepted forms of a request-target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://host/path?query` or `https://...`: the path component is judged, the host
    /// must agree with `Host`.
    Absolute,
    /// `*`, with `OPTIONS` only: a question about the server, answered by the gateway.
    Asterisk,
}

/// Which form the raw request-target `raw` (the bytes the client sent, as Pingora keeps them
/// in `raw_path()`) has, or [`Rejection::TargetForm`]. `is_options`: the method is `OPTIONS`.
pub fn target_form(raw: &[u8], is_options: bool) -> Result<TargetForm, Rejection> {
    let has_scheme = |scheme: &[u8]| {
        raw.len() > scheme.len() && raw[..scheme.len()].eq_ignore_ascii_case(scheme)
    };
    match raw.first() {
        Some(b'/') => Ok(TargetForm::Origin),
        Some(b'*') if raw.len() == 1 && is_options => Ok(TargetForm::Asterisk),
        _ if has_scheme(b"http://") || has_scheme(b"https://") => Ok(TargetForm::Absolute),
        _ => Err(Rejection::TargetForm),
    }
}

/// Unreserved characters (RFC 3986 §2.3): an escape of one of these means the same as the
/// character itself, so it is decoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The canonical form of `path` (no query): unreserved escapes decoded, other escapes
/// upper-cased, runs of `/` merged. Refused: escapes of separators or NUL, raw `\`, control
/// or non-ASCII bytes, `;` parameters, dot segments. Idempotent: a canonical path maps to
/// itself.
pub fn path(path: &str) -> Result<String, Rejection> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Rejection::NotAbsolute);
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex(h), hex(l)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(Rejection::BadEscape);
                };
                let v = hi << 4 | lo;
                let next_is_escape = bytes.get(i + 3).copied().and_then(hex).is_some()
                    && bytes.get(i + 4).copied().and_then(hex).is_some();
                if v == b'%' && next_is_escape {
                    return Err(Rejection::DoubleEncoding);
                }
                if matches!(v, b'/' | b'\\' | 0) {
                    return Err(Rejection::EncodedSeparator);
                }
                if v.is_ascii_control() {
                    return Err(Rejection::BadByte);
                }
                if is_unreserved(v) {
                    out.push(v as char);
                } else {
                    out.push_str(&format!("%{v:02X}"));
                }
                i += 3;
                continue;
            }
            b';' => return Err(Rejection::PathParameter),
            b'\\' => return Err(Rejection::BadByte),
            b if b.is_ascii_control() || !b.is_ascii() || b == b' ' => {
                return Err(Rejection::BadByte)
            }
            b'/' if out.ends_with('/') => {}
            _ => out.push(b as char),
        }
        i += 1;
    }
    if out.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(Rejection::DotSegment);
    }
    if out
        .split('/')
        .any(|seg| seg.starts_with("%20") || seg.ends_with("%20"))
    {
        return Err(Rejection::EdgeSpace);
    }
    if out.split('/').any(|seg| seg.ends_with('.')) {
        return Err(Rejection::TrailingDot);
    }
    if !escapes_are_utf8(&out) {
        return Err(Rejection::InvalidUtf8);
    }
    Ok(out)
}

/// Whether the `%XX` escapes of a canonical path (every other byte is ASCII) decode to UTF-8.
fn escapes_are_utf8(path: &str) -> bool {
    if !path.contains('%') {
        return true;
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escape {
            Some((hi, lo)) => {
                decoded.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// The canonical form of a `Host` value: lower-case, without port and without the trailing
/// dot of a fully qualified name. IPv6 literals keep their brackets off (`[::1]:80` → `::1`).
pub fn host(value: &str) -> Result<String, Rejection> {
    let value = value.trim();
    let name = if let Some(rest) = value.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(Rejection::BadHost)?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return Err(Rejection::BadHost);
        }
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(Rejection::BadHost);
        }
        return Ok(addr.to_ascii_lowercase());
    } else {
        match value.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return Err(Rejection::BadHost),
            None => value,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && name.split('.').all(|label| !label.is_empty());
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(Rejection::BadHost)
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_become_one() {
        for (raw, canonical) in [
            ("/app/x", "/app/x"),
            ("//app/x", "/app/x"),
            ("/app//x///y", "/app/x/y"),
            ("/%61pp/x", "/app/x"),
            ("/%41PP/%7euser", "/APP/~user"),
            ("/a%2db%5Fc", "/a-b_c"),
            ("/q%3fx%20y", "/q%3Fx%20y"),
            ("/", "/"),
            ("//", "/"),
            ("/app/", "/app/"),
            ("/app/..x", "/app/..x"),
            ("/%2e%2ex", "/..x"),
            ("/files/My%20Document.pdf", "/files/My%20Document.pdf"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/100%25", "/100%25"),
            ("/.well-known/x", "/.well-known/x"),
        ] {
            assert_eq!(path(raw), Ok(canonical.to_owned()), "{raw}");
        }
    }

    #[test]
    fn what_cannot_be_made_canonical_is_refused() {
        for (raw, why) in [
            ("app", Rejection::NotAbsolute),
            ("/app;x/y", Rejection::PathParameter),
            ("/x/..;/app/y", Rejection::PathParameter),
            ("/app/../admin", Rejection::DotSegment),
            ("/app/%2e%2e/admin", Rejection::DotSegment),
            ("/app/%2E./x", Rejection::DotSegment),
            ("/a/./b", Rejection::DotSegment),
            ("/a/.", Rejection::DotSegment),
            ("/a%2fb", Rejection::EncodedSeparator),
            ("/a%5Cb", Rejection::EncodedSeparator),
            ("/a%00b", Rejection::EncodedSeparator),
            ("/a%0ab", Rejection::BadByte),
            ("/a\\b", Rejection::BadByte),
            ("/a%zz", Rejection::BadEscape),
            ("/a%4", Rejection::BadEscape),
            ("/é", Rejection::BadByte),
            ("/admin%20", Rejection::EdgeSpace),
            ("/%20admin/x", Rejection::EdgeSpace),
            ("/app/x%20/y", Rejection::EdgeSpace),
            ("/app./x", Rejection::TrailingDot),
            ("/admin%2e", Rejection::TrailingDot),
            ("/x/%252e%252e/app", Rejection::DoubleEncoding),
            ("/%c0%afapp", Rejection::InvalidUtf8),
            ("/x/%C0%AE%C0%AE/app", Rejection::InvalidUtf8),
            ("/a%ff", Rejection::InvalidUtf8),
        ] {
            assert_eq!(path(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn only_origin_absolute_http_and_options_asterisk_targets_are_accepted() {
        for (raw, options, form) in [
            ("/", false, TargetForm::Origin),
            ("/app/x?q", false, TargetForm::Origin),
            ("http://h/app", false, TargetForm::Absolute),
            ("HTTPS://h", false, TargetForm::Absolute),
            ("*", true, TargetForm::Asterisk),
        ] {
            assert_eq!(target_form(raw.as_bytes(), options), Ok(form), "{raw}");
        }
        for raw in [
            "app/secret",
            "%2Fapp/secret",
            "x:/app/secret",
            "*/app/x",
            "*",
            "127.0.0.1:9000",
            "",
            " /app/x",
            "http:/app",
            "http://",
            "ftp://h/app",
            "httpx://h/app",
        ] {
            assert_eq!(
                target_form(raw.as_bytes(), false),
                Err(Rejection::TargetForm),
                "{raw}"
            );
        }
        assert_eq!(target_form(b"*/x", true), Err(Rejection::TargetForm));
    }

    #[test]
    fn hosts() {
        for (raw, canonical) in [
            ("Admin.Example.COM", "admin.example.com"),
            ("admin.example.com.", "admin.example.com"),
            ("admin.example.com.:8443", "admin.example.com"),
            ("127.0.0.1:8000", "127.0.0.1"),
            ("[::1]:8000", "::1"),
            ("[2001:DB8::1]", "2001:db8::1"),
        ] {
            assert_eq!(host(raw), Ok(canonical.to_owned()), "{raw}");
        }
        for bad in [
            "", ".", "a..b", "a b", "a:x", "[::1", "[zz]", "a/b", "a:123456",
        ] {
            assert_eq!(host(bad), Err(Rejection::BadHost), "{bad}");
        }
    }
}
