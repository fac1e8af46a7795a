//! What a usable email address and password are. Sign-up validates both and says what is
//! wrong; sign-in only normalizes, so that its answer never depends on whether an account
//! exists. Every address that enters (sign-up, sign-in, forgot-password, an operator's
//! `--user`) goes through [`normalize_email`] first, so two spellings a person cannot tell
//! apart are one account, and through [`check_scripts`], so look-alikes from other scripts
//! never become one.

use crate::error::ApiError;
use unicode_normalization::UnicodeNormalization;
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

/// The address as it is compared and stored: default-ignorable code points dropped (zero
/// width spaces and joiners, soft hyphens, bidi controls, variation selectors: invisible,
/// so `an<U+200B>n` must be `ann`), NFKC-normalized (full-width and other compatibility
/// forms fold into their plain letters: `ａｎｎ` is `ann`), lower-cased as GoTrue does, and
/// trimmed. ASCII addresses come out as before (trimmed and lower-cased), so stored
/// accounts keep matching.
pub fn normalize_email(email: &str) -> String {
    let visible: String = email
        .chars()
        .filter(|c| !is_default_ignorable(*c))
        .collect();
    let folded: String = visible.nfkc().collect::<String>().to_lowercase();
    // Lower-casing can leave a string that is not NFKC (a few letters decompose).
    let email = folded.nfkc().collect::<String>().trim().to_owned();
    match email.rsplit_once('@') {
        Some((local, domain)) if domain.contains("xn--") => {
            // One form for a domain spelled in Punycode or in Unicode: the Unicode one.
            let (unicode, errors) = idna::domain_to_unicode(domain);
            if errors.is_ok() {
                return format!("{local}@{unicode}");
            }
            email
        }
        _ => email,
    }
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, stable since Unicode
/// 6; the ranges include the reserved ones): characters a renderer shows as nothing.
/// Listed here because no maintained crate exposes the property on its own.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Refuses (400) a normalized address whose local part, or a label of whose domain, mixes
/// scripts beyond what UTS #39 calls *highly restrictive*: one script, or Latin with the
/// Han, Kana and Hangul that Chinese, Japanese and Korean writing mix with it. So
/// `pаypal@` with a Cyrillic `а`, or a Greek `ο` among Latin letters, is refused, while
/// `иван@` (all Cyrillic) and `taro.太郎@` are not. ASCII punctuation counts as no script;
/// any other character that is not a letter or digit fit for an identifier (UTS #39's
/// General Security Profile: symbols, emoji, obsolete letters) is refused too.
pub fn check_scripts(email: &str) -> Result<(), ApiError> {
    let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
    let one_script = |part: &str| {
        // Spaces and controls are the shape check's business (a 422 naming the field).
        let letters: String = part
            .chars()
            .filter(|c| !c.is_ascii_punctuation() && !c.is_whitespace() && !c.is_control())
            .collect();
        letters.as_str().detect_restriction_level() <= RestrictionLevel::HighlyRestrictive
    };
    if one_script(local) && domain.split('.').all(one_script) {
        Ok(())
    } else {
        Err(ApiError::MixedScriptEmail)
    }
}

/// An address as sign-in and forgot-password take it: normalized and script-checked, its
/// shape left alone (a wrong shape is a wrong password there, not a hint).
pub fn email_input(email: &str) -> Result<String, ApiError> {
    let email = normalize_email(email);
    check_scripts(&email)?;
    Ok(email)
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

/// The normalized address; a 400 when it mixes scripts ([`check_scripts`]), or a 422
/// naming the `email` field when it is not an address.
pub fn validate_email(email: &str) -> Result<String, ApiError> {
    let e = normalize_email(email);
    if looks_like_email(&e) {
        check_scripts(&e)?;
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

    #[test]
    fn invisible_and_compatibility_characters_fold_away() {
        for spelling in [
            "ann@example.com",
            " ANN@Example.COM ",
            "an\u{200B}n@example.com",
            "a\u{00AD}nn@example.com",
            "\u{FEFF}ann@example.com\u{200D}",
            "an\u{2060}n@exam\u{200C}ple.com",
            "ann\u{FE0F}@example.com",
            "\u{202E}ann@example.com",
            "ａｎｎ@ｅｘａｍｐｌｅ.ｃｏｍ",
            "ann@example\u{FF0E}com",
        ] {
            assert_eq!(normalize_email(spelling), "ann@example.com", "{spelling:?}");
            assert_eq!(
                validate_email(spelling).expect("valid"),
                "ann@example.com",
                "{spelling:?}"
            );
        }
        // Composed and decomposed accents are one address.
        assert_eq!(
            normalize_email("Jose\u{0301}@example.com"),
            normalize_email("Jos\u{00E9}@example.com")
        );
    }

    #[test]
    fn a_domain_in_punycode_and_in_unicode_is_one_domain() {
        assert_eq!(normalize_email("bob@xn--exmple-cua.com"), "bob@exämple.com");
        assert_eq!(normalize_email("bob@EXÄMPLE.com"), "bob@exämple.com");
        assert_eq!(normalize_email("bob@example.com"), "bob@example.com");
    }

    #[test]
    fn spaces_and_controls_are_a_shape_problem_not_a_script_one() {
        for bad in [
            "a b@example.com",
            "a\0b@example.com",
            "a\u{2028}b@example.com",
        ] {
            assert!(
                matches!(
                    validate_email(bad),
                    Err(ApiError::Validation { field: "email", .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn look_alikes_from_other_scripts_are_refused() {
        for mixed in [
            "p\u{0430}ypal@example.com",     // Cyrillic а among Latin
            "j\u{043E}hn.smith@example.com", // Cyrillic о
            "ann\u{03BF}@example.com",       // Greek ο
            "ann@ex\u{0430}mple.com",        // in the domain
            "\u{0391}nn@example.com",        // Greek Α (NFKC keeps it Greek)
        ] {
            assert!(
                matches!(validate_email(mixed), Err(ApiError::MixedScriptEmail)),
                "{mixed:?}"
            );
            assert!(email_input(mixed).is_err(), "{mixed:?}");
        }
        for fine in [
            "\u{0438}\u{0432}\u{0430}\u{043D}@example.com", // иван, all Cyrillic
            "\u{03B1}\u{03BB}\u{03C6}\u{03B1}@example.gr",  // αλφα, all Greek
            "taro.\u{592A}\u{90CE}@example.jp",             // Latin with Han
            "jos\u{00E9}+tag_1@example.com",
            "o'brien@example.com",
        ] {
            assert!(validate_email(fine).is_ok(), "{fine:?}");
        }
    }
}
