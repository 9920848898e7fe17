//! Account work every edge shares (the REST API, the CLI): making users with a checked and
//! hashed password, changing passwords, making and revoking tokens, the first admin.
//! Hashing runs on the blocking pool.

use std::sync::Arc;

use shipyard_core::entities::now_millis;
use shipyard_core::{Error, Result};
use shipyard_store::Database;
use shipyard_store::identity::{ApiToken, User};

use crate::authenticate::Authenticator;
use crate::scope::Scopes;
use crate::secret;

/// The environment variables that name the first admin.
pub const ADMIN_USERNAME_VAR: &str = "SHIPYARD_ADMIN_USERNAME";
pub const ADMIN_PASSWORD_VAR: &str = "SHIPYARD_ADMIN_PASSWORD";

async fn hashed(username: &str, password: &str) -> Result<String> {
    secret::check_password_policy(username, password).map_err(Error::InvalidParameter)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || secret::hash_password(&password))
        .await
        .map_err(|e| Error::Internal(format!("hashing failed: {e}")))?
        .map_err(Error::Internal)
}

/// Makes a user.
pub async fn create_user(db: &Database, username: &str, password: &str, is_admin: bool) -> Result<User> {
    shipyard_store::identity::check_username(username)?;
    let hash = hashed(username, password).await?;
    db.create_user(username, &hash, is_admin).await
}

/// What [`bootstrap_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// An admin existed already (the given secret, if any, was not used).
    Existing,
    /// This admin was made.
    Created(String),
}

/// Makes the first admin from `username` and `password` when no admin exists. Without a
/// password and without an admin the server cannot be administered, so that is an error
/// (there is no default password: MLflow's `password1234` was CVE-2026-2635).
pub async fn bootstrap_admin(db: &Database, username: &str, password: Option<&str>) -> Result<Bootstrap> {
    if db.has_admin().await? {
        return Ok(Bootstrap::Existing);
    }
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(Error::invalid(format!(
            "authentication is on and no admin exists: set {ADMIN_PASSWORD_VAR} (and optionally {ADMIN_USERNAME_VAR}, \
             default 'admin') for the first start"
        )));
    };
    match db.user_credentials(username).await? {
        // A user of that name exists but is not an admin: promoting them silently would hand
        // an account someone else may hold the keys to the server.
        Some(_) => Err(Error::invalid(format!(
            "no admin exists and user '{username}' is not one: choose another {ADMIN_USERNAME_VAR}"
        ))),
        None => {
            create_user(db, username, password, true).await?;
            Ok(Bootstrap::Created(username.to_owned()))
        }
    }
}

/// Sets `username`'s password and ends their browser sessions. `current` must be the present
/// password when users change their own (ASVS 6.2.3); an admin changing someone else's passes
/// `None`.
pub async fn change_password(
    authenticator: &Arc<Authenticator>,
    username: &str,
    password: &str,
    current: Option<&str>,
) -> Result<()> {
    let db = authenticator.db();
    if let Some(current) = current {
        let stored = db
            .user_credentials(username)
            .await?
            .ok_or_else(|| Error::not_found(format!("User with username={username} not found")))?;
        let (current, hash) = (current.to_owned(), stored.password_hash);
        let matches =
            tokio::task::spawn_blocking(move || secret::verify_password(&current, &hash)).await.unwrap_or(false);
        if !matches {
            return Err(Error::PermissionDenied("the current password is wrong".to_owned()));
        }
    }
    let hash = hashed(username, password).await?;
    db.set_password_hash(username, &hash).await?;
    authenticator.forget(username);
    // Browser sessions opened with the old password end (API tokens stay: they are not the
    // password, and CI jobs hold them).
    let user = db.get_user(username).await?;
    crate::session::close_all(db, &user).await?;
    Ok(())
}

/// A token just made: the record, and the token itself (shown once).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub record: ApiToken,
    pub token: String,
}

/// Longest lifetime a token may be given, in days.
pub const MAX_TOKEN_DAYS: i64 = 3650;

/// Makes a token for `user`: `scopes` as in [`crate::scope`] (empty: `all`), expiring after
/// `days` (none: never).
pub async fn issue_token(
    db: &Database,
    user: &User,
    name: &str,
    scopes: &[String],
    days: Option<i64>,
) -> Result<IssuedToken> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 256 {
        return Err(Error::invalid("a token's name must be 1 to 256 characters long"));
    }
    let scopes = Scopes::parse(scopes).map_err(Error::InvalidParameter)?;
    let expires_time = match days {
        None => None,
        Some(d) if (1..=MAX_TOKEN_DAYS).contains(&d) => Some(now_millis() + d * 86_400_000),
        Some(d) => return Err(Error::invalid(format!("expires_in_days must be 1 to {MAX_TOKEN_DAYS}, not {d}"))),
    };
    let made = secret::new_token();
    let record = db.create_token(user.id, &made.id, name, &made.digest, &scopes.texts(), expires_time).await?;
    Ok(IssuedToken { record, token: made.token })
}
