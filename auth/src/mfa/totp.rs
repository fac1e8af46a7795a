//! Time-based one-time codes (RFC 6238) as every authenticator app reads them: SHA-1, six
//! digits, 30-second steps, one step of drift either way. `totp-rs` computes the codes (its
//! 5.x line shares the workspace's `hmac`/`sha1`); which step matched, which the replay guard
//! needs, is found here by trying the three steps with a constant-time comparison.

use rand::RngCore;
use totp_rs::{Algorithm, Secret, TOTP};

/// Seconds per step.
pub const STEP: u64 = 30;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;

/// A fresh random secret.
pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

/// The secret as the base32 people type into an app.
pub fn base32(secret: &[u8]) -> String {
    match Secret::Raw(secret.to_vec()).to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => String::new(),
    }
}

fn totp(secret: &[u8], digits: usize) -> Option<TOTP> {
    TOTP::new(Algorithm::SHA1, digits, 1, STEP, secret.to_vec()).ok()
}

/// The time step a six-digit `code` matches at Unix time `now` (this step, or one either
/// side), if any.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, 6)?;
    let step = now / STEP;
    let mut found = None;
    for s in [step.saturating_sub(1), step, step + 1] {
        let expected = t.generate(s * STEP);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(s);
        }
    }
    found
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `otpauth://totp/<issuer>:<account>?secret=..&issuer=..&algorithm=SHA1&digits=6&period=30`
/// (the Key Uri Format authenticator apps scan).
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let enc = |s: &str| authflow_shared::request::encode_query_value(s);
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

/// The URI as a QR code: an inline SVG of rectangles only (no script, no text from anyone,
/// no image request, so the pages' CSP stays as it is).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (its secret is the ASCII "12345678901234567890", 8 digits).
    #[test]
    fn rfc_6238_vectors() {
        let t = totp(b"12345678901234567890", 8).expect("totp");
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(t.generate(time), code, "T = {time}");
        }
    }

    #[test]
    fn one_step_either_side_and_no_more() {
        let secret = new_secret();
        let t = totp(&secret, 6).expect("totp");
        let now = 1_700_000_015;
        let code_at = |offset: i64| t.generate((now as i64 + offset * STEP as i64) as u64);
        assert_eq!(matching_step(&secret, &code_at(0), now), Some(now / STEP));
        assert_eq!(
            matching_step(&secret, &code_at(-1), now),
            Some(now / STEP - 1)
        );
        assert_eq!(
            matching_step(&secret, &code_at(1), now),
            Some(now / STEP + 1)
        );
        assert_eq!(matching_step(&secret, &code_at(-2), now), None);
        assert_eq!(matching_step(&secret, &code_at(2), now), None);
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "12345a", now), None);
    }

    #[test]
    fn the_uri_and_the_qr_code() {
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "Acme Corp", "ann@example.com");
        assert!(
            uri.starts_with("otpauth://totp/Acme%20Corp:ann%40example.com?secret="),
            "{uri}"
        );
        assert!(uri.contains(&base32(&secret)));
        let svg = qr_svg(&uri).expect("qr");
        assert!(svg.contains("<svg"), "{svg}");
        assert!(!svg.contains("<script"));
    }
}
