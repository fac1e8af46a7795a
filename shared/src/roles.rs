//! Role names: what both services accept as a role, and how a set of roles is written for
//! upstreams (`X-User-Roles`). Roles enter in three places (the operator command, a
//! provider's sign-in, a route's `roles` in `gateway.toml`); each refuses a bad name here.

/// The most roles one account may hold (a grant past it is refused): a header and a session
/// record stay small.
pub const MAX_ROLES_PER_USER: usize = 32;

/// The longest role name.
pub const MAX_ROLE_LEN: usize = 64;

/// Why a role name or set of roles is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("role {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ : -")]
    BadName(String),
    #[error("at most {MAX_ROLES_PER_USER} roles per user")]
    TooMany,
}

/// `Ok` when `name` is a role name: `[A-Za-z0-9._:-]{1,64}`. Nothing else may reach a
/// header, a log line or a database row as a role.
pub fn validate(name: &str) -> Result<(), RoleError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ROLE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RoleError::BadName(name.to_owned()))
    }
}

/// `roles` checked, sorted and without duplicates: the form a session record keeps, so the
/// gateway never sorts per request.
pub fn normalize<I, S>(roles: I) -> Result<Vec<String>, RoleError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out: Vec<String> = Vec::new();
    for r in roles {
        let r = r.into();
        validate(&r)?;
        out.push(r);
    }
    out.sort_unstable();
    out.dedup();
    if out.len() > MAX_ROLES_PER_USER {
        return Err(RoleError::TooMany);
    }
    Ok(out)
}

/// A comma-separated list (`?roles=admin,ops`), checked; empty items are skipped.
pub fn parse_list(list: &str) -> Result<Vec<String>, RoleError> {
    normalize(list.split(',').map(str::trim).filter(|r| !r.is_empty()))
}

/// The `X-User-Roles` value: sorted roles joined by `,` (role names hold no `,`).
pub fn header_value(sorted: &[String]) -> String {
    sorted.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_a_small_safe_alphabet() {
        for ok in ["admin", "ops", "team:billing", "a.b_c-d", &"x".repeat(64)] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a,b",
            "ädmin",
            "<script>",
            "a\r\nb",
            &"x".repeat(65),
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn normalized_roles_are_sorted_unique_and_bounded() {
        assert_eq!(
            normalize(["ops", "admin", "ops"]).expect("ok"),
            vec!["admin".to_owned(), "ops".to_owned()]
        );
        let many: Vec<String> = (0..33).map(|i| format!("r{i}")).collect();
        assert_eq!(normalize(many), Err(RoleError::TooMany));
        assert_eq!(parse_list(" ops, admin,,"), normalize(["admin", "ops"]));
        assert!(parse_list("ops,bad role").is_err());
        assert_eq!(header_value(&normalize(["b", "a"]).expect("ok")), "a,b");
    }
}
