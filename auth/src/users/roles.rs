//! The built-in provider's roles and disabled accounts: what `authflow users` changes, and
//! what a sign-in reads into the session's claims. Only the database is touched here; the
//! caller carries each change to the live sessions (see `src/users.rs`).

use crate::credentials::normalize_email;
use authflow_shared::now_ms;
use authflow_shared::roles::{self, RoleError, MAX_ROLES_PER_USER};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("no account has the address {0}")]
    NoSuchUser(String),
    #[error("{0}")]
    Role(#[from] RoleError),
}

/// How a provider's sign-in turns what the provider says into AuthFlow roles: the hook for
/// external sign-in (issue 20), whose `[[identity.providers]]` tables will carry these two
/// keys and call [`RoleMapping::roles`] at every sign-in. `roles_claim` names the claim
/// (`groups`, or a dotted path such as `realm_access.roles`) holding a list of strings (or
/// one string); each value found in `role_map` becomes that AuthFlow role, every other value
/// is dropped, so a provider can never hand out a role the operator did not map.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_claim: Option<String>,
    /// Provider value -> AuthFlow role.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub role_map: std::collections::BTreeMap<String, String>,
}

impl RoleMapping {
    /// The mapping of provider table `p` (`roles_claim`, `role_map`), as its sign-ins apply it.
    pub fn of(p: &crate::config::identity::ProviderConfig) -> Self {
        RoleMapping {
            roles_claim: p.roles_claim.clone(),
            role_map: p.role_map.clone(),
        }
    }

    /// Every mapped-to role must be a role name (for `check`).
    pub fn validate(&self) -> Result<(), RoleError> {
        self.role_map.values().try_for_each(|r| roles::validate(r))
    }

    /// The AuthFlow roles for a sign-in whose claims are `claims` (sorted, at most 32).
    pub fn roles(&self, claims: &serde_json::Value) -> Vec<String> {
        self.map(&self.values(claims))
    }

    /// The provider's values at `roles_claim` in `claims` (none without one).
    pub fn values(&self, claims: &serde_json::Value) -> Vec<String> {
        let Some(path) = &self.roles_claim else {
            return Vec::new();
        };
        let found = path
            .split('.')
            .try_fold(claims, |v, key| v.get(key))
            .unwrap_or(&serde_json::Value::Null);
        match found {
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str())
                .map(str::to_owned)
                .collect(),
            serde_json::Value::String(one) => vec![one.clone()],
            _ => Vec::new(),
        }
    }

    /// The AuthFlow roles `role_map` gives provider `values` (sorted, at most 32); unmapped
    /// values are dropped.
    pub fn map(&self, values: &[String]) -> Vec<String> {
        let mut out: Vec<String> = values
            .iter()
            .filter_map(|v| self.role_map.get(v))
            .filter(|r| roles::validate(r).is_ok())
            .cloned()
            .collect();
        out.sort_unstable();
        out.dedup();
        out.truncate(MAX_ROLES_PER_USER);
        out
    }
}

/// The roles of `user_id`, sorted.
pub async fn roles_of(db: &AnyPool, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
        .bind(user_id)
        .fetch_all(db)
        .await?;
    Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
}

/// An account as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserView {
    pub user_id: String,
    pub email: String,
    pub verified: bool,
    /// Unix ms of the operator's `disable`, while disabled.
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub roles: Vec<String>,
}

/// What one command changed: the account after it, and whether anything was different.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub user: UserView,
    pub changed: bool,
}

/// The accounts table and its roles, for operators.
pub struct Directory {
    db: AnyPool,
}

impl Directory {
    pub fn new(db: AnyPool) -> Self {
        Directory { db }
    }

    /// Every account, by address.
    pub async fn list(&self) -> Result<Vec<UserView>, DirectoryError> {
        let rows = sqlx::query(
            "SELECT id, email, email_verified_at, disabled_at, created_at FROM users ORDER BY email",
        )
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.view(&row).await?);
        }
        Ok(out)
    }

    /// The account with `email`.
    pub async fn show(&self, email: &str) -> Result<UserView, DirectoryError> {
        let email = normalize_email(email);
        let row = sqlx::query(
            "SELECT id, email, email_verified_at, disabled_at, created_at FROM users WHERE email = $1",
        )
        .bind(&email)
        .fetch_optional(&self.db)
        .await?
        .ok_or(DirectoryError::NoSuchUser(email))?;
        self.view(&row).await
    }

    async fn view(&self, row: &sqlx::any::AnyRow) -> Result<UserView, DirectoryError> {
        let user_id: String = row.try_get("id")?;
        Ok(UserView {
            roles: roles_of(&self.db, &user_id).await?,
            user_id,
            email: row.try_get("email")?,
            verified: row
                .try_get::<Option<i64>, _>("email_verified_at")?
                .is_some(),
            disabled_at: row.try_get("disabled_at")?,
            created_at: row.try_get("created_at")?,
        })
    }

    /// Gives `role` to the account (refused past [`MAX_ROLES_PER_USER`] or for a bad name).
    pub async fn grant(&self, email: &str, role: &str) -> Result<Change, DirectoryError> {
        roles::validate(role)?;
        let user = self.show(email).await?;
        if user.roles.iter().any(|r| r == role) {
            return Ok(Change {
                user,
                changed: false,
            });
        }
        if user.roles.len() >= MAX_ROLES_PER_USER {
            return Err(RoleError::TooMany.into());
        }
        sqlx::query(
            "INSERT INTO user_roles (user_id, role, granted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, role) DO NOTHING",
        )
        .bind(&user.user_id)
        .bind(role)
        .bind(now_ms() as i64)
        .execute(&self.db)
        .await?;
        // Checked again once written: grants running at the same time each saw room.
        if roles_of(&self.db, &user.user_id).await?.len() > MAX_ROLES_PER_USER {
            sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
                .bind(&user.user_id)
                .bind(role)
                .execute(&self.db)
                .await?;
            return Err(RoleError::TooMany.into());
        }
        self.changed(email).await
    }

    /// The roles `user_id` has now, sorted.
    pub async fn roles_of(&self, user_id: &str) -> Result<Vec<String>, DirectoryError> {
        Ok(roles_of(&self.db, user_id).await?)
    }

    /// Takes `role` from the account.
    pub async fn revoke(&self, email: &str, role: &str) -> Result<Change, DirectoryError> {
        roles::validate(role)?;
        let user = self.show(email).await?;
        let done = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
            .bind(&user.user_id)
            .bind(role)
            .execute(&self.db)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(Change {
                user,
                changed: false,
            });
        }
        self.changed(email).await
    }

    /// Disables (no sign-in) or enables the account.
    pub async fn set_disabled(
        &self,
        email: &str,
        disabled: bool,
    ) -> Result<Change, DirectoryError> {
        let user = self.show(email).await?;
        if user.disabled_at.is_some() == disabled {
            return Ok(Change {
                user,
                changed: false,
            });
        }
        let now = now_ms() as i64;
        sqlx::query("UPDATE users SET disabled_at = $1, updated_at = $2 WHERE id = $3")
            .bind(disabled.then_some(now))
            .bind(now)
            .bind(&user.user_id)
            .execute(&self.db)
            .await?;
        self.changed(email).await
    }

    async fn changed(&self, email: &str) -> Result<Change, DirectoryError> {
        Ok(Change {
            user: self.show(email).await?,
            changed: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn directory() -> Directory {
        let db =
            super::super::builtin::connect("sqlite::memory:", 1, std::time::Duration::from_secs(5))
                .await
                .expect("db");
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ('u1', 'ann@example.com', 'x', 1, 1)")
            .execute(&db)
            .await
            .expect("user");
        Directory::new(db)
    }

    #[tokio::test]
    async fn grant_revoke_and_disable_say_what_changed() {
        let d = directory().await;
        let c = d.grant("Ann@Example.com", "ops").await.expect("grant");
        assert!(c.changed);
        assert_eq!(c.user.roles, vec!["ops".to_owned()]);
        assert!(
            !d.grant("ann@example.com", "ops")
                .await
                .expect("again")
                .changed
        );
        d.grant("ann@example.com", "admin").await.expect("grant");
        assert_eq!(
            roles_of(&d.db, "u1").await.expect("roles"),
            vec!["admin".to_owned(), "ops".to_owned()]
        );
        assert!(
            d.revoke("ann@example.com", "ops")
                .await
                .expect("revoke")
                .changed
        );
        assert!(
            !d.revoke("ann@example.com", "ops")
                .await
                .expect("again")
                .changed
        );
        assert!(matches!(
            d.grant("ann@example.com", "bad role").await,
            Err(DirectoryError::Role(_))
        ));
        assert!(matches!(
            d.grant("nobody@example.com", "ops").await,
            Err(DirectoryError::NoSuchUser(_))
        ));
        let off = d
            .set_disabled("ann@example.com", true)
            .await
            .expect("disable");
        assert!(off.changed && off.user.disabled_at.is_some());
        let on = d
            .set_disabled("ann@example.com", false)
            .await
            .expect("enable");
        assert!(on.changed && on.user.disabled_at.is_none());
        assert_eq!(d.list().await.expect("list").len(), 1);
    }

    #[test]
    fn provider_values_become_mapped_roles_and_nothing_else() {
        let m = RoleMapping {
            roles_claim: Some("groups".into()),
            role_map: [("eng-admins", "admin"), ("sre", "ops"), ("oncall", "ops")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        let claims = serde_json::json!({"groups": ["sre", "oncall", "eng-admins", "admin", 3]});
        assert_eq!(m.roles(&claims), vec!["admin".to_owned(), "ops".to_owned()]);
        assert_eq!(
            m.roles(&serde_json::json!({"groups": "sre"})),
            vec!["ops".to_owned()]
        );
        assert!(m.roles(&serde_json::json!({"other": ["sre"]})).is_empty());
        let nested = RoleMapping {
            roles_claim: Some("realm_access.roles".into()),
            ..m.clone()
        };
        let claims = serde_json::json!({"realm_access": {"roles": ["eng-admins"]}});
        assert_eq!(nested.roles(&claims), vec!["admin".to_owned()]);
        assert!(RoleMapping::default().roles(&claims).is_empty());
        assert!(m.validate().is_ok());
        let bad = RoleMapping {
            role_map: [("x".to_owned(), "not a role".to_owned())].into(),
            ..RoleMapping::default()
        };
        assert!(bad.validate().is_err());
    }

    #[tokio::test]
    async fn at_most_32_roles() {
        let d = directory().await;
        for i in 0..MAX_ROLES_PER_USER {
            d.grant("ann@example.com", &format!("r{i}"))
                .await
                .expect("grant");
        }
        assert!(matches!(
            d.grant("ann@example.com", "one-more").await,
            Err(DirectoryError::Role(RoleError::TooMany))
        ));
    }
}
