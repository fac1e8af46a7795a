//! What a usable email address and password are. Sign-up validates both and says what is
//! wrong; sign-in only normalizes, so that its answer never depends on the address's shape.

use crate::error::ApiError;

/// Trimmed and lower-cased, as GoTrue does.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A conservative shape check (RFC 5321 lengths, one `@`, a dotted domain, no characters
/// that need quoting). Deliverability is proven by the verification link, not here.
pub fn looks_like_email(email: &str) -> bool {
    if email.len() > 254
        || email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\"\\".contains(c))
    {
        return false;
    }
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !local.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        }
        None => false,
    }
}

/// The normalized address, or a 422 naming the `email` field.
pub fn validate_email(email: &str) -> Result<String, ApiError> {
    let e = normalize_email(email);
    if looks_like_email(&e) {
        Ok(e)
    } else {
        Err(ApiError::Validation {
            field: "email",
            reason: "is not a valid email address".into(),
        })
    }
}

/// The password policy ([`crate::password::check_policy`]) as a 422 naming the field.
pub fn validate_password(password: &str) -> Result<(), ApiError> {
    crate::password::check_policy(password).map_err(|reason| ApiError::Validation {
        field: "password",
        reason: reason.into(),
    })
}

/// Whether a sign-in attempt is worth checking at all: empty or oversized input is a wrong
/// password, answered the same way.
pub fn plausible_sign_in(email: &str, password: &str) -> bool {
    !email.is_empty()
        && !password.is_empty()
        && password.chars().count() <= crate::password::MAX_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            validate_email("  Ann@Example.COM ").expect("valid"),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.y",
            "ann@localhost",
            "a b@x.y",
            "ann@x..y",
            "<a>@x.y",
            "a@.x.y",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_email(&format!("{}@x.y", "a".repeat(65))).is_err());
    }
}
