//! Users, API tokens and grants. The rules about them (hashing, roles, what a permission
//! allows) are `bastion-auth`'s; this module keeps them. The HTTP admin API and the
//! `bastion user/token/grant` commands both call these methods, audited like every write.

use bastion_auth::{Permission, ResourceKind, Role};
use bastion_core::{Error, time};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::MetaStore;
use super::write::WriteOn;
use crate::error::{StoreError, StoreResult};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub has_password: bool,
    pub disabled: bool,
    pub created_time: i64,
}

/// What authenticating a user needs; never serialized.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenInfo {
    pub token_id: String,
    pub user: String,
    pub description: String,
    pub created_time: i64,
    pub expires_time: Option<i64>,
    pub revoked_time: Option<i64>,
    pub last_used_time: Option<i64>,
}

/// A token found by its hash, with its owner.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub token: TokenInfo,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Grant {
    pub principal: String,
    pub resource_kind: ResourceKind,
    pub resource: String,
    pub permission: Permission,
    pub created_time: i64,
}

/// A new token as the store keeps it (the secret itself is never passed here).
#[derive(Debug, Clone)]
pub struct TokenDraft<'a> {
    pub token_id: &'a str,
    pub token_hash: &'a str,
    pub user: &'a str,
    pub description: &'a str,
    pub expires_time: Option<i64>,
}

/// User and group names: 1–128 characters of letters, digits and `. _ @ + -`.
pub fn validate_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'));
    if !ok {
        return Err(Error::invalid(format!(
            "invalid {what} name: use 1-128 letters, digits or . _ @ + -"
        )));
    }
    Ok(())
}

/// `user:<name>` or `group:<name>`.
pub fn validate_principal(principal: &str) -> Result<(), Error> {
    match principal.split_once(':') {
        Some(("user", n)) => validate_name("user", n),
        Some(("group", n)) => validate_name("group", n),
        _ => Err(Error::invalid(
            "invalid principal: use user:<name> or group:<name>",
        )),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored {what} is not valid"))
}

fn user_of(row: &AnyRow) -> StoreResult<UserCredentials> {
    let role: String = row.try_get("role")?;
    let password_hash: Option<String> = row.try_get("password_hash")?;
    let disabled: Option<i64> = row.try_get("disabled_time")?;
    Ok(UserCredentials {
        user: User {
            name: row.try_get("name")?,
            role: role.parse().map_err(|_| corrupt("role"))?,
            has_password: password_hash.is_some(),
            disabled: disabled.is_some(),
            created_time: row.try_get("created_time")?,
        },
        password_hash,
    })
}

fn token_of(row: &AnyRow) -> StoreResult<TokenInfo> {
    Ok(TokenInfo {
        token_id: row.try_get("token_id")?,
        user: row.try_get("user_name")?,
        description: row.try_get("description")?,
        created_time: row.try_get("created_time")?,
        expires_time: row.try_get("expires_time")?,
        revoked_time: row.try_get("revoked_time")?,
        last_used_time: row.try_get("last_used_time")?,
    })
}

fn grant_of(row: &AnyRow) -> StoreResult<Grant> {
    let kind: String = row.try_get("resource_kind")?;
    let perm: String = row.try_get("permission")?;
    Ok(Grant {
        principal: row.try_get("principal")?,
        resource_kind: kind.parse().map_err(|_| corrupt("resource kind"))?,
        resource: row.try_get("resource")?,
        permission: perm.parse().map_err(|_| corrupt("permission"))?,
        created_time: row.try_get("created_time")?,
    })
}

const USER_COLUMNS: &str = "name, role, password_hash, disabled_time, created_time";
const TOKEN_COLUMNS: &str =
    "token_id, user_name, description, created_time, expires_time, revoked_time, last_used_time";

fn no_user(name: &str) -> StoreError {
    Error::not_found(format!("No user named '{name}'")).into()
}

impl MetaStore {
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
    ) -> StoreResult<User> {
        validate_name("user", name)?;
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(Error::already_exists(format!("User '{name}' already exists")).into());
        }
        let now = time::now_ms();
        sqlx::query("INSERT INTO users (name, role, password_hash, disabled_time, created_time) VALUES ($1, $2, $3, NULL, $4)")
            .bind(name)
            .bind(role.as_str())
            .bind(password_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(User {
            name: name.into(),
            role,
            has_password: password_hash.is_some(),
            disabled: false,
            created_time: now,
        })
    }

    pub async fn user_credentials(&self, name: &str) -> StoreResult<Option<UserCredentials>> {
        let row = query_fmt!("SELECT {USER_COLUMNS} FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(user_of).transpose()
    }

    pub async fn get_user(&self, name: &str) -> StoreResult<User> {
        self.user_credentials(name)
            .await?
            .map(|c| c.user)
            .ok_or_else(|| no_user(name))
    }

    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = query_fmt!("SELECT {USER_COLUMNS} FROM users ORDER BY name")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| user_of(r).map(|c| c.user)).collect()
    }

    pub async fn count_users(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn set_user_role(&self, name: &str, role: Role) -> StoreResult<User> {
        let changed = sqlx::query("UPDATE users SET role = $1 WHERE name = $2")
            .bind(role.as_str())
            .bind(name)
            .write_on(self)
            .await?;
        if changed == 0 {
            return Err(no_user(name));
        }
        self.get_user(name).await
    }

    /// Sets (or with `None` removes) the user's password hash.
    pub async fn set_user_password(
        &self,
        name: &str,
        password_hash: Option<&str>,
    ) -> StoreResult<()> {
        let changed = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .write_on(self)
            .await?;
        if changed == 0 {
            return Err(no_user(name));
        }
        Ok(())
    }

    /// Disabling a user stops every credential of theirs at once; enabling restores them.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> StoreResult<User> {
        let when = disabled.then(time::now_ms);
        let changed = sqlx::query("UPDATE users SET disabled_time = $1 WHERE name = $2")
            .bind(when)
            .bind(name)
            .write_on(self)
            .await?;
        if changed == 0 {
            return Err(no_user(name));
        }
        self.get_user(name).await
    }

    pub async fn delete_user(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM api_tokens WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM grants WHERE principal = $1")
            .bind(format!("user:{name}"))
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(no_user(name));
        }
        tx.commit().await
    }

    pub async fn create_token(&self, draft: &TokenDraft<'_>) -> StoreResult<TokenInfo> {
        if draft.description.len() > 500 {
            return Err(Error::invalid("token description: at most 500 bytes").into());
        }
        let now = time::now_ms();
        if draft.expires_time.is_some_and(|e| e <= now) {
            return Err(Error::invalid("token expiry must be in the future").into());
        }
        let mut tx = self.begin_write().await?;
        let owner = sqlx::query("SELECT disabled_time FROM users WHERE name = $1")
            .bind(draft.user)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| no_user(draft.user))?;
        let disabled: Option<i64> = owner.try_get("disabled_time")?;
        if disabled.is_some() {
            return Err(Error::invalid_state(format!("User '{}' is disabled", draft.user)).into());
        }
        sqlx::query("INSERT INTO api_tokens (token_id, token_hash, user_name, description, created_time, expires_time, revoked_time, last_used_time) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)")
            .bind(draft.token_id)
            .bind(draft.token_hash)
            .bind(draft.user)
            .bind(draft.description)
            .bind(now)
            .bind(draft.expires_time)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(TokenInfo {
            token_id: draft.token_id.into(),
            user: draft.user.into(),
            description: draft.description.into(),
            created_time: now,
            expires_time: draft.expires_time,
            revoked_time: None,
            last_used_time: None,
        })
    }

    /// Tokens of `user`, or of everyone, newest first.
    pub async fn list_tokens(&self, user: Option<&str>) -> StoreResult<Vec<TokenInfo>> {
        let rows = match user {
            Some(u) => query_fmt!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_name = $1 ORDER BY created_time DESC, token_id")
                .bind(u)
                .fetch_all(&self.read)
                .await?,
            None => query_fmt!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_time DESC, token_id")
                .fetch_all(&self.read)
                .await?,
        };
        rows.iter().map(token_of).collect()
    }

    pub async fn get_token(&self, token_id: &str) -> StoreResult<TokenInfo> {
        let row = query_fmt!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_id = $1")
            .bind(token_id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| Error::not_found(format!("No token with id '{token_id}'")))?;
        token_of(&row)
    }

    /// Revokes a token; revoking twice is not an error.
    pub async fn revoke_token(&self, token_id: &str) -> StoreResult<TokenInfo> {
        sqlx::query(
            "UPDATE api_tokens SET revoked_time = $1 WHERE token_id = $2 AND revoked_time IS NULL",
        )
        .bind(time::now_ms())
        .bind(token_id)
        .write_on(self)
        .await?;
        self.get_token(token_id).await
    }

    /// The token with this hash and its owner, whatever their state (the caller decides).
    pub async fn token_by_hash(&self, token_hash: &str) -> StoreResult<Option<TokenOwner>> {
        let row = query_fmt!(
            "SELECT t.token_id, t.user_name, t.description, t.created_time, t.expires_time, t.revoked_time, t.last_used_time, \
             u.name, u.role, u.password_hash, u.disabled_time, u.created_time AS user_created_time \
             FROM api_tokens t JOIN users u ON u.name = t.user_name WHERE t.token_hash = $1"
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let token = token_of(&row)?;
        let role: String = row.try_get("role")?;
        let disabled: Option<i64> = row.try_get("disabled_time")?;
        let password: Option<String> = row.try_get("password_hash")?;
        Ok(Some(TokenOwner {
            token,
            user: User {
                name: row.try_get("name")?,
                role: role.parse().map_err(|_| corrupt("role"))?,
                has_password: password.is_some(),
                disabled: disabled.is_some(),
                created_time: row.try_get("user_created_time")?,
            },
        }))
    }

    /// Records when tokens were last used. Bookkeeping, not a change anyone makes: it is
    /// flushed in batches and not audited.
    pub async fn touch_tokens(&self, used: &[(String, i64)]) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        for (id, when) in used {
            sqlx::query("UPDATE api_tokens SET last_used_time = $1 WHERE token_id = $2 AND (last_used_time IS NULL OR last_used_time < $1)")
                .bind(*when)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Grants `permission` on one resource (`*`: every resource of the kind), replacing any
    /// earlier grant to the same principal on it.
    pub async fn set_grant(
        &self,
        principal: &str,
        kind: ResourceKind,
        resource: &str,
        permission: Permission,
    ) -> StoreResult<Grant> {
        validate_principal(principal)?;
        if resource.is_empty() || resource.len() > 256 {
            return Err(Error::invalid("grant resource: 1-256 bytes").into());
        }
        let now = time::now_ms();
        sqlx::query(
            "INSERT INTO grants (principal, resource_kind, resource, permission, created_time) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (principal, resource_kind, resource) DO UPDATE SET permission = excluded.permission, created_time = excluded.created_time",
        )
        .bind(principal)
        .bind(kind.as_str())
        .bind(resource)
        .bind(permission.as_str())
        .bind(now)
        .write_on(self)
        .await?;
        Ok(Grant {
            principal: principal.into(),
            resource_kind: kind,
            resource: resource.into(),
            permission,
            created_time: now,
        })
    }

    pub async fn delete_grant(
        &self,
        principal: &str,
        kind: ResourceKind,
        resource: &str,
    ) -> StoreResult<()> {
        let changed = sqlx::query(
            "DELETE FROM grants WHERE principal = $1 AND resource_kind = $2 AND resource = $3",
        )
        .bind(principal)
        .bind(kind.as_str())
        .bind(resource)
        .write_on(self)
        .await?;
        super::rows::deleted_one(changed, || {
            format!("No grant to '{principal}' on {kind} '{resource}'")
        })
    }

    /// Every grant, or those of one principal.
    pub async fn list_grants(&self, principal: Option<&str>) -> StoreResult<Vec<Grant>> {
        let rows = match principal {
            Some(p) => sqlx::query("SELECT * FROM grants WHERE principal = $1 ORDER BY principal, resource_kind, resource")
                .bind(p)
                .fetch_all(&self.read)
                .await?,
            None => sqlx::query("SELECT * FROM grants ORDER BY principal, resource_kind, resource")
                .fetch_all(&self.read)
                .await?,
        };
        rows.iter().map(grant_of).collect()
    }
}

/// Hashes a password (argon2id, ~20 ms of CPU) off the async runtime. A password the policy
/// refuses is the caller's error.
pub async fn hash_password(password: String) -> StoreResult<String> {
    let hashed = tokio::task::spawn_blocking(move || bastion_auth::password::hash(&password))
        .await
        .map_err(|_| StoreError::Corrupt("password hashing was interrupted".into()))?;
    hashed.map_err(|e| match e {
        bastion_auth::AuthError::WeakPassword(why) => {
            Error::invalid(format!("Password refused: {why}")).into()
        }
        other => StoreError::Corrupt(other.to_string()),
    })
}

impl MetaStore {
    /// Mints a token for `user`: the secret is returned once and only its hash is kept.
    pub async fn issue_token(
        &self,
        user: &str,
        description: &str,
        expires_time: Option<i64>,
    ) -> StoreResult<(String, TokenInfo)> {
        let minted = bastion_auth::token::generate();
        let info = self
            .create_token(&TokenDraft {
                token_id: &minted.id,
                token_hash: &minted.hash.0,
                user,
                description,
                expires_time,
            })
            .await?;
        Ok((minted.secret, info))
    }
}
