//! Users, API tokens, roles and role permissions: the rows behind `shipyard-auth`.
//!
//! The store keeps what it is given: password hashes (never passwords), token digests (never
//! tokens), permission and resource-type names as text. `shipyard-auth` makes and checks them.
//! A user's own grants are the permissions of a role named `__user_<id>__` (MLflow 3.17 keeps
//! them the same way), so one query yields every grant that applies to a user.

use serde::Serialize;
use shipyard_core::entities::now_millis;
use shipyard_core::{Error, Result};

use crate::db::Database;
use crate::sql::Row;
use crate::tracking::unique_violation;

/// The workspace roles live in (Shipyard has one).
pub const DEFAULT_WORKSPACE: &str = "default";

/// A user, as anyone may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub created_time: i64,
}

/// A user with what authenticates them.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// When the password last changed (cached verifications older than this are void).
    pub password_time: i64,
}

/// An API token's record; the token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: String,
    pub user_id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_time: i64,
    pub expires_time: Option<i64>,
    pub revoked_time: Option<i64>,
    pub last_used_time: Option<i64>,
}

/// A token's record with its digest and owner, for authentication.
#[derive(Debug, Clone)]
pub struct TokenCredentials {
    pub token: ApiToken,
    pub digest: String,
    pub owner: User,
}

/// A role: a named set of permissions users are assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub id: i64,
    pub workspace: String,
    pub name: String,
    pub description: Option<String>,
}

/// One permission of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolePermission {
    pub id: i64,
    pub role_id: i64,
    pub resource_type: String,
    pub resource_pattern: String,
    pub permission: String,
}

/// A user's membership of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleAssignment {
    pub id: i64,
    pub user_id: i64,
    pub role_id: i64,
}

/// The name of the role holding `user_id`'s own grants.
pub fn personal_role(user_id: i64) -> String {
    format!("__user_{user_id}__")
}

fn user_from_row(row: &Row) -> Result<User> {
    Ok(User {
        id: row.get("id")?,
        username: row.get("username")?,
        is_admin: row.get::<i64>("is_admin")? != 0,
        created_time: row.get("created_time")?,
    })
}

/// A client certificate bound to a user: a TLS client presenting it (verified against the
/// server's `--tls-client-ca`) is that user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClientCertificate {
    /// SHA-256 of the certificate's DER bytes, lowercase hex.
    pub sha256: String,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    pub created_time: i64,
}

/// A fingerprint as stored: 64 lowercase hex digits (colons and spaces dropped, case ignored).
pub fn normalize_fingerprint(text: &str) -> Result<String> {
    let hex: String = text.chars().filter(|c| !matches!(c, ':' | ' ')).collect::<String>().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(Error::invalid(format!(
            "'{text}' is not a SHA-256 fingerprint: give the certificate's 64 hex digits (openssl x509 -noout \
             -fingerprint -sha256)"
        )))
    }
}

fn certificate_from_row(row: &Row) -> Result<ClientCertificate> {
    Ok(ClientCertificate {
        sha256: row.get("sha256")?,
        user_id: row.get("user_id")?,
        username: row.get("username")?,
        name: row.get("name")?,
        created_time: row.get("created_time")?,
    })
}

fn token_from_row(row: &Row) -> Result<ApiToken> {
    let scopes: String = row.get("scopes")?;
    Ok(ApiToken {
        id: row.get("id")?,
        user_id: row.get("user_id")?,
        name: row.get("name")?,
        scopes: serde_json::from_str(&scopes).map_err(|e| Error::Internal(format!("token scopes: {e}")))?,
        created_time: row.get("created_time")?,
        expires_time: row.get("expires_time")?,
        revoked_time: row.get("revoked_time")?,
        last_used_time: row.get("last_used_time")?,
    })
}

fn role_from_row(row: &Row) -> Result<Role> {
    Ok(Role {
        id: row.get("id")?,
        workspace: row.get("workspace")?,
        name: row.get("name")?,
        description: row.get("description")?,
    })
}

fn role_permission_from_row(row: &Row) -> Result<RolePermission> {
    Ok(RolePermission {
        id: row.get("id")?,
        role_id: row.get("role_id")?,
        resource_type: row.get("resource_type")?,
        resource_pattern: row.get("resource_pattern")?,
        permission: row.get("permission")?,
    })
}

/// Why `username` cannot name a user: it must be 1 to 256 characters, with no control
/// characters and no `:` (HTTP Basic authentication could not send it).
pub fn check_username(username: &str) -> Result<()> {
    if username.is_empty() || username.chars().count() > 256 {
        return Err(Error::invalid("username must be 1 to 256 characters long"));
    }
    if username.chars().any(|c| c.is_control() || c == ':') || username.trim() != username {
        return Err(Error::invalid("username must not contain ':', control characters or surrounding spaces"));
    }
    Ok(())
}

impl Database {
    // ----- users -----

    /// Creates a user with an already-hashed password.
    pub async fn create_user(&self, username: &str, password_hash: &str, is_admin: bool) -> Result<User> {
        check_username(username)?;
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let now = now_millis();
                let insert = c.stmt(
                    "INSERT INTO users (username, password_hash, is_admin, created_time, password_time) \
                     VALUES ($1, $2, $3, $4, $4) RETURNING id",
                    [username.as_str().into(), hash.into(), i64::from(is_admin).into(), now.into()],
                );
                let Some(row) = unique_violation(c.fetch_one(insert).await)? else {
                    return Err(Error::AlreadyExists(format!("User '{username}' already exists.")));
                };
                Ok(User { id: row.get("id")?, username, is_admin, created_time: now })
            })
        })
        .await
    }

    /// A user with their password hash, by name.
    pub async fn user_credentials(&self, username: &str) -> Result<Option<UserCredentials>> {
        let username = username.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT * FROM users WHERE username = $1", [username.into()]);
                c.fetch_optional(sql)
                    .await?
                    .map(|row| {
                        Ok(UserCredentials {
                            user: user_from_row(&row)?,
                            password_hash: row.get("password_hash")?,
                            password_time: row.get("password_time")?,
                        })
                    })
                    .transpose()
            })
        })
        .await
    }

    /// A user by name; not found is an error naming them.
    pub async fn get_user(&self, username: &str) -> Result<User> {
        self.user_credentials(username)
            .await?
            .map(|c| c.user)
            .ok_or_else(|| Error::not_found(format!("User with username={username} not found")))
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.read(|c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT * FROM users ORDER BY username", []);
                c.fetch_all(sql).await?.iter().map(user_from_row).collect()
            })
        })
        .await
    }

    /// Whether any admin exists (the first start makes one).
    pub async fn has_admin(&self) -> Result<bool> {
        self.read(|c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT COUNT(*) AS n FROM users WHERE is_admin = 1", []);
                Ok(c.fetch_one(sql).await?.get::<i64>("n")? > 0)
            })
        })
        .await
    }

    /// Sets a user's password hash (and so voids cached verifications of the old one).
    pub async fn set_password_hash(&self, username: &str, password_hash: &str) -> Result<()> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "UPDATE users SET password_hash = $1, password_time = $2 WHERE username = $3",
                    [hash.into(), now_millis().into(), username.as_str().into()],
                );
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("User with username={username} not found")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Makes a user an admin or not.
    pub async fn set_admin(&self, username: &str, is_admin: bool) -> Result<User> {
        let username = username.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "UPDATE users SET is_admin = $1 WHERE username = $2",
                    [i64::from(is_admin).into(), username.as_str().into()],
                );
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("User with username={username} not found")));
                }
                let read = c.stmt("SELECT * FROM users WHERE username = $1", [username.into()]);
                user_from_row(&c.fetch_one(read).await?)
            })
        })
        .await
    }

    /// Deletes a user, their tokens, role memberships and personal role.
    pub async fn delete_user(&self, username: &str) -> Result<User> {
        let username = username.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let read = c.stmt("SELECT * FROM users WHERE username = $1", [username.as_str().into()]);
                let Some(row) = c.fetch_optional(read).await? else {
                    return Err(Error::not_found(format!("User with username={username} not found")));
                };
                let user = user_from_row(&row)?;
                let personal = c.stmt(
                    "DELETE FROM roles WHERE workspace = $1 AND name = $2",
                    [DEFAULT_WORKSPACE.into(), personal_role(user.id).into()],
                );
                c.execute(personal).await?;
                let delete = c.stmt("DELETE FROM users WHERE id = $1", [user.id.into()]);
                c.execute(delete).await?;
                Ok(user)
            })
        })
        .await
    }

    // ----- API tokens -----

    /// Records a token (its digest only) for `user_id`.
    pub async fn create_token(
        &self,
        user_id: i64,
        id: &str,
        name: &str,
        digest: &str,
        scopes: &[String],
        expires_time: Option<i64>,
    ) -> Result<ApiToken> {
        let scopes_text = serde_json::to_string(scopes).map_err(|e| Error::Internal(e.to_string()))?;
        let token = ApiToken {
            id: id.to_owned(),
            user_id,
            name: name.to_owned(),
            scopes: scopes.to_vec(),
            created_time: now_millis(),
            expires_time,
            revoked_time: None,
            last_used_time: None,
        };
        let (record, digest) = (token.clone(), digest.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let insert = c.stmt(
                    "INSERT INTO api_tokens (id, user_id, name, digest, scopes, created_time, expires_time) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    [
                        record.id.as_str().into(),
                        record.user_id.into(),
                        record.name.as_str().into(),
                        digest.into(),
                        scopes_text.into(),
                        record.created_time.into(),
                        record.expires_time.into(),
                    ],
                );
                if unique_violation(c.execute(insert).await)?.is_none() {
                    return Err(Error::AlreadyExists(format!("a token with id {} exists", record.id)));
                }
                Ok(())
            })
        })
        .await?;
        Ok(token)
    }

    /// A token's record, digest and owner, by its public id.
    pub async fn token_credentials(&self, id: &str) -> Result<Option<TokenCredentials>> {
        let id = id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT t.*, u.username, u.is_admin, u.created_time AS user_created_time \
                     FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1",
                    [id.into()],
                );
                let Some(row) = c.fetch_optional(sql).await? else { return Ok(None) };
                let token = token_from_row(&row)?;
                let owner = User {
                    id: token.user_id,
                    username: row.get("username")?,
                    is_admin: row.get::<i64>("is_admin")? != 0,
                    created_time: row.get("user_created_time")?,
                };
                Ok(Some(TokenCredentials { digest: row.get("digest")?, token, owner }))
            })
        })
        .await
    }

    /// A user's tokens, newest first.
    pub async fn list_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT * FROM api_tokens WHERE user_id = $1 ORDER BY created_time DESC, id",
                    [user_id.into()],
                );
                c.fetch_all(sql).await?.iter().map(token_from_row).collect()
            })
        })
        .await
    }

    /// Revokes a token of `user_id` (at once, on every replica: each request reads it).
    pub async fn revoke_token(&self, user_id: i64, id: &str) -> Result<ApiToken> {
        let id = id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "UPDATE api_tokens SET revoked_time = $1 WHERE id = $2 AND user_id = $3 AND revoked_time IS NULL",
                    [now_millis().into(), id.as_str().into(), user_id.into()],
                );
                c.execute(sql).await?;
                let read = c.stmt(
                    "SELECT * FROM api_tokens WHERE id = $1 AND user_id = $2",
                    [id.as_str().into(), user_id.into()],
                );
                let row = c.fetch_optional(read).await?.ok_or_else(|| Error::not_found(format!("no token {id}")))?;
                token_from_row(&row)
            })
        })
        .await
    }

    /// Deletes `user_id`'s tokens named `name` that expired before `time` (old browser
    /// sessions); how many.
    pub async fn delete_expired_tokens(&self, user_id: i64, name: &str, time: i64) -> Result<u64> {
        let name = name.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "DELETE FROM api_tokens WHERE user_id = $1 AND name = $2 AND expires_time IS NOT NULL \
                     AND expires_time <= $3",
                    [user_id.into(), name.into(), time.into()],
                );
                Ok(c.execute(sql).await?)
            })
        })
        .await
    }

    /// Binds a client certificate (its fingerprint) to a user.
    pub async fn add_client_certificate(&self, user_id: i64, sha256: &str, name: &str) -> Result<ClientCertificate> {
        let sha256 = normalize_fingerprint(sha256)?;
        let name = name.trim().to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let insert = c.stmt(
                    "INSERT INTO client_certificates (sha256, user_id, name, created_time) VALUES ($1, $2, $3, $4)",
                    [sha256.as_str().into(), user_id.into(), name.into(), now_millis().into()],
                );
                if unique_violation(c.execute(insert).await)?.is_none() {
                    return Err(Error::AlreadyExists(format!("certificate {sha256} is already bound to a user")));
                }
                let read = c.stmt(
                    "SELECT k.*, u.username FROM client_certificates k JOIN users u ON u.id = k.user_id \
                     WHERE k.sha256 = $1",
                    [sha256.as_str().into()],
                );
                certificate_from_row(&c.fetch_one(read).await?)
            })
        })
        .await
    }

    /// The certificates bound to a user (every one when `user_id` is `None`), oldest first.
    pub async fn list_client_certificates(&self, user_id: Option<i64>) -> Result<Vec<ClientCertificate>> {
        self.read(move |c| {
            Box::pin(async move {
                let mut sql =
                    c.sql("SELECT k.*, u.username FROM client_certificates k JOIN users u ON u.id = k.user_id");
                if let Some(id) = user_id {
                    let p = sql.arg(id);
                    sql.push(" WHERE k.user_id = ").push(&p);
                }
                sql.push(" ORDER BY k.created_time, k.sha256");
                c.fetch_all(sql).await?.iter().map(certificate_from_row).collect()
            })
        })
        .await
    }

    /// Unbinds a certificate: it signs nobody in any more.
    pub async fn remove_client_certificate(&self, sha256: &str) -> Result<()> {
        let sha256 = normalize_fingerprint(sha256)?;
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt("DELETE FROM client_certificates WHERE sha256 = $1", [sha256.as_str().into()]);
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("no client certificate {sha256}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// The user a client certificate (its fingerprint) signs in, if it is bound to one.
    pub async fn certificate_user(&self, sha256: &str) -> Result<Option<User>> {
        let sha256 = sha256.to_ascii_lowercase();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT u.* FROM client_certificates k JOIN users u ON u.id = k.user_id WHERE k.sha256 = $1",
                    [sha256.into()],
                );
                c.fetch_optional(sql).await?.as_ref().map(user_from_row).transpose()
            })
        })
        .await
    }

    /// Records that a token was used at `time`.
    pub async fn touch_token(&self, id: &str, time: i64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt("UPDATE api_tokens SET last_used_time = $1 WHERE id = $2", [time.into(), id.into()]);
                c.execute(sql).await?;
                Ok(())
            })
        })
        .await
    }

    // ----- roles -----

    /// Creates a role.
    pub async fn create_role(&self, workspace: &str, name: &str, description: Option<&str>) -> Result<Role> {
        if name.trim().is_empty() || name.starts_with("__user_") {
            return Err(Error::invalid(format!("'{name}' cannot name a role")));
        }
        let (workspace, name, description) = (workspace.to_owned(), name.to_owned(), description.map(str::to_owned));
        self.write(move |c| {
            Box::pin(async move {
                let insert = c.stmt(
                    "INSERT INTO roles (workspace, name, description) VALUES ($1, $2, $3) RETURNING id",
                    [workspace.as_str().into(), name.as_str().into(), description.clone().into()],
                );
                let Some(row) = unique_violation(c.fetch_one(insert).await)? else {
                    return Err(Error::AlreadyExists(format!(
                        "Role '{name}' already exists in workspace '{workspace}'."
                    )));
                };
                Ok(Role { id: row.get("id")?, workspace, name, description })
            })
        })
        .await
    }

    /// A role by id.
    pub async fn get_role(&self, id: i64) -> Result<Role> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT * FROM roles WHERE id = $1", [id.into()]);
                let row =
                    c.fetch_optional(sql).await?.ok_or_else(|| Error::not_found(format!("Role {id} not found")))?;
                role_from_row(&row)
            })
        })
        .await
    }

    /// The role holding `user_id`'s own grants, if they have any.
    pub async fn personal_role_of(&self, user_id: i64) -> Result<Option<Role>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT * FROM roles WHERE workspace = $1 AND name = $2",
                    [DEFAULT_WORKSPACE.into(), personal_role(user_id).into()],
                );
                c.fetch_optional(sql).await?.map(|row| role_from_row(&row)).transpose()
            })
        })
        .await
    }

    /// Roles (of one workspace, or all), personal roles left out, by name.
    pub async fn list_roles(&self, workspace: Option<&str>) -> Result<Vec<Role>> {
        let workspace = workspace.map(str::to_owned);
        self.read(move |c| {
            Box::pin(async move {
                let mut sql = c.sql("SELECT * FROM roles WHERE name NOT LIKE '\\_\\_user\\_%' ESCAPE '\\'");
                if let Some(w) = workspace {
                    let p = sql.arg(w);
                    sql.push(" AND workspace = ").push(&p);
                }
                sql.push(" ORDER BY workspace, name");
                c.fetch_all(sql).await?.iter().map(role_from_row).collect()
            })
        })
        .await
    }

    /// Renames a role or changes its description.
    pub async fn update_role(&self, id: i64, name: Option<&str>, description: Option<&str>) -> Result<Role> {
        let (name, description) = (name.map(str::to_owned), description.map(str::to_owned));
        if name.as_deref().is_some_and(|n| n.trim().is_empty() || n.starts_with("__user_")) {
            return Err(Error::invalid("that name cannot name a role"));
        }
        self.write(move |c| {
            Box::pin(async move {
                if let Some(name) = name {
                    let sql = c.stmt("UPDATE roles SET name = $1 WHERE id = $2", [name.as_str().into(), id.into()]);
                    if unique_violation(c.execute(sql).await)?.is_none() {
                        return Err(Error::AlreadyExists(format!("Role '{name}' already exists.")));
                    }
                }
                if let Some(description) = description {
                    let sql =
                        c.stmt("UPDATE roles SET description = $1 WHERE id = $2", [description.into(), id.into()]);
                    c.execute(sql).await?;
                }
                let read = c.stmt("SELECT * FROM roles WHERE id = $1", [id.into()]);
                let row =
                    c.fetch_optional(read).await?.ok_or_else(|| Error::not_found(format!("Role {id} not found")))?;
                role_from_row(&row)
            })
        })
        .await
    }

    /// Deletes a role with its permissions and assignments.
    pub async fn delete_role(&self, id: i64) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt("DELETE FROM roles WHERE id = $1", [id.into()]);
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("Role {id} not found")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Adds (or, for the same resource, replaces) a permission of a role.
    pub async fn add_role_permission(
        &self,
        role_id: i64,
        resource_type: &str,
        resource_pattern: &str,
        permission: &str,
    ) -> Result<RolePermission> {
        let (t, p, level) = (resource_type.to_owned(), resource_pattern.to_owned(), permission.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let role = c.stmt("SELECT id FROM roles WHERE id = $1", [role_id.into()]);
                if c.fetch_optional(role).await?.is_none() {
                    return Err(Error::not_found(format!("Role {role_id} not found")));
                }
                upsert_role_permission(c, role_id, &t, &p, &level).await
            })
        })
        .await
    }

    /// Changes the level of a role permission.
    pub async fn update_role_permission(&self, id: i64, permission: &str) -> Result<RolePermission> {
        let level = permission.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let sql =
                    c.stmt("UPDATE role_permissions SET permission = $1 WHERE id = $2", [level.into(), id.into()]);
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("Role permission {id} not found")));
                }
                let read = c.stmt("SELECT * FROM role_permissions WHERE id = $1", [id.into()]);
                role_permission_from_row(&c.fetch_one(read).await?)
            })
        })
        .await
    }

    /// Removes a role permission.
    pub async fn remove_role_permission(&self, id: i64) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt("DELETE FROM role_permissions WHERE id = $1", [id.into()]);
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("Role permission {id} not found")));
                }
                Ok(())
            })
        })
        .await
    }

    /// A role's permissions.
    pub async fn list_role_permissions(&self, role_id: i64) -> Result<Vec<RolePermission>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT * FROM role_permissions WHERE role_id = $1 ORDER BY id", [role_id.into()]);
                c.fetch_all(sql).await?.iter().map(role_permission_from_row).collect()
            })
        })
        .await
    }

    /// Assigns a role to a user (again: the same assignment).
    pub async fn assign_role(&self, user_id: i64, role_id: i64) -> Result<RoleAssignment> {
        self.write(move |c| {
            Box::pin(async move {
                let role = c.stmt("SELECT id FROM roles WHERE id = $1", [role_id.into()]);
                if c.fetch_optional(role).await?.is_none() {
                    return Err(Error::not_found(format!("Role {role_id} not found")));
                }
                let insert = c.stmt(
                    "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT (user_id, role_id) DO NOTHING",
                    [user_id.into(), role_id.into()],
                );
                c.execute(insert).await?;
                let read =
                    c.stmt("SELECT * FROM user_roles WHERE user_id = $1 AND role_id = $2", [user_id.into(), role_id.into()]);
                let row = c.fetch_one(read).await?;
                Ok(RoleAssignment { id: row.get("id")?, user_id, role_id })
            })
        })
        .await
    }

    /// Takes a role from a user.
    pub async fn unassign_role(&self, user_id: i64, role_id: i64) -> Result<()> {
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2",
                    [user_id.into(), role_id.into()],
                );
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("user {user_id} does not have role {role_id}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// The roles a user is assigned (personal role left out).
    pub async fn user_roles(&self, user_id: i64) -> Result<Vec<Role>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT r.* FROM roles r JOIN user_roles ur ON ur.role_id = r.id \
                     WHERE ur.user_id = $1 AND r.name NOT LIKE '\\_\\_user\\_%' ESCAPE '\\' ORDER BY r.name",
                    [user_id.into()],
                );
                c.fetch_all(sql).await?.iter().map(role_from_row).collect()
            })
        })
        .await
    }

    /// A role's members.
    pub async fn role_users(&self, role_id: i64) -> Result<Vec<RoleAssignment>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT * FROM user_roles WHERE role_id = $1 ORDER BY id", [role_id.into()]);
                c.fetch_all(sql)
                    .await?
                    .iter()
                    .map(|row| Ok(RoleAssignment { id: row.get("id")?, user_id: row.get("user_id")?, role_id }))
                    .collect()
            })
        })
        .await
    }

    // ----- grants -----

    /// Grants `user_id` `permission` on one resource (replacing what they had on it).
    pub async fn grant_user(
        &self,
        user_id: i64,
        resource_type: &str,
        resource_id: &str,
        permission: &str,
    ) -> Result<RolePermission> {
        let (t, p, level) = (resource_type.to_owned(), resource_id.to_owned(), permission.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let insert = c.stmt(
                    "INSERT INTO roles (workspace, name, description) VALUES ($1, $2, NULL) \
                     ON CONFLICT (workspace, name) DO NOTHING",
                    [DEFAULT_WORKSPACE.into(), personal_role(user_id).into()],
                );
                c.execute(insert).await?;
                let read = c.stmt("SELECT id FROM roles WHERE workspace = $1 AND name = $2", [
                    DEFAULT_WORKSPACE.into(),
                    personal_role(user_id).into(),
                ]);
                let role_id: i64 = c.fetch_one(read).await?.get("id")?;
                let assign = c.stmt(
                    "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT (user_id, role_id) DO NOTHING",
                    [user_id.into(), role_id.into()],
                );
                c.execute(assign).await?;
                upsert_role_permission(c, role_id, &t, &p, &level).await
            })
        })
        .await
    }

    /// Takes back what `grant_user` gave on one resource.
    pub async fn revoke_user(&self, user_id: i64, resource_type: &str, resource_id: &str) -> Result<()> {
        let (t, p) = (resource_type.to_owned(), resource_id.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "DELETE FROM role_permissions WHERE resource_type = $1 AND resource_pattern = $2 AND role_id = \
                     (SELECT id FROM roles WHERE workspace = $3 AND name = $4)",
                    [t.as_str().into(), p.as_str().into(), DEFAULT_WORKSPACE.into(), personal_role(user_id).into()],
                );
                if c.execute(sql).await? == 0 {
                    return Err(Error::not_found(format!("no {t} permission on '{p}' was granted to user {user_id}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Every permission that applies to `user_id`: their roles' and their own.
    pub async fn user_grants(&self, user_id: i64) -> Result<Vec<RolePermission>> {
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt(
                    "SELECT rp.* FROM role_permissions rp JOIN user_roles ur ON ur.role_id = rp.role_id \
                     WHERE ur.user_id = $1 ORDER BY rp.id",
                    [user_id.into()],
                );
                c.fetch_all(sql).await?.iter().map(role_permission_from_row).collect()
            })
        })
        .await
    }

    // ----- what a request's resource belongs to -----

    /// The experiment a run belongs to, or `None` when there is no such run.
    pub async fn run_experiment(&self, run_id: &str) -> Result<Option<i64>> {
        let run_id = run_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT experiment_id FROM runs WHERE run_uuid = $1", [run_id.into()]);
                c.fetch_optional(sql).await?.map(|row| row.get("experiment_id")).transpose()
            })
        })
        .await
    }

    /// The datasets with a version stored at `artifact_path` (content-addressed files can be
    /// shared by datasets).
    pub async fn datasets_with_file(&self, artifact_path: &str) -> Result<Vec<String>> {
        let path = artifact_path.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = c.stmt("SELECT DISTINCT name FROM dataset_versions WHERE artifact_path = $1", [path.into()]);
                c.fetch_all(sql).await?.iter().map(|row| row.get("name")).collect()
            })
        })
        .await
    }

    /// Removes every permission naming one resource (it was deleted: a new one of the same
    /// name must not inherit them), or moves them to its new name.
    pub async fn retarget_grants(&self, resource_type: &str, from: &str, to: Option<&str>) -> Result<u64> {
        let (t, from, to) = (resource_type.to_owned(), from.to_owned(), to.map(str::to_owned));
        self.write(move |c| {
            Box::pin(async move {
                let sql = match to {
                    None => c.stmt(
                        "DELETE FROM role_permissions WHERE resource_type = $1 AND resource_pattern = $2",
                        [t.into(), from.into()],
                    ),
                    Some(to) => c.stmt(
                        "UPDATE role_permissions SET resource_pattern = $1 \
                         WHERE resource_type = $2 AND resource_pattern = $3",
                        [to.into(), t.into(), from.into()],
                    ),
                };
                Ok(c.execute(sql).await?)
            })
        })
        .await
    }
}

/// Inserts a role permission, or sets the level of the one on the same resource.
async fn upsert_role_permission(
    c: &mut crate::db::Conn<'_>,
    role_id: i64,
    resource_type: &str,
    resource_pattern: &str,
    permission: &str,
) -> Result<RolePermission> {
    let upsert = c.stmt(
        "INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (role_id, resource_type, resource_pattern) DO UPDATE SET permission = excluded.permission",
        [role_id.into(), resource_type.into(), resource_pattern.into(), permission.into()],
    );
    c.execute(upsert).await?;
    let read = c.stmt(
        "SELECT * FROM role_permissions WHERE role_id = $1 AND resource_type = $2 AND resource_pattern = $3",
        [role_id.into(), resource_type.into(), resource_pattern.into()],
    );
    role_permission_from_row(&c.fetch_one(read).await?)
}
