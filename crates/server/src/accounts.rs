//! MLflow 3.17's auth REST surface (users, per-user grants, roles), so `mlflow`'s
//! `AuthServiceClient` works against Shipyard, and Shipyard's API tokens. Thin handlers over
//! `shipyard_auth::accounts` and the store; each route's permission is in [`routes`].
//! With authentication off these routes answer 400: there is no one to be.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use shipyard_auth::{Access, Capability, Permission, Policy, ResourceType, Routes};
use shipyard_core::Error;
use shipyard_store::identity::{DEFAULT_WORKSPACE, User};

use crate::AppState;
use crate::caller::Caller;
use crate::error::ApiError;
use crate::tracking::{JsonResult, empty};
use crate::wire::{MlflowRequest, opt_i64, opt_string, required};

/// The account routes under `/api` (and `/ajax-api`, for MLflow's UI).
pub(crate) fn routes() -> Routes<AppState> {
    use shipyard_auth::Capability::{Read, Update};
    let own = Policy::Authenticated(Read);
    let change = Policy::Authenticated(Update);
    Routes::new()
        .post("/2.0/mlflow/users/create", create_user, Policy::Admin)
        .get("/2.0/mlflow/users/get", get_user, own)
        .get("/2.0/mlflow/users/current", current_user, own)
        .patch("/2.0/mlflow/users/update-password", update_password, change)
        .patch("/2.0/mlflow/users/update-admin", update_admin, Policy::Admin)
        .delete("/2.0/mlflow/users/delete", delete_user, Policy::Admin)
        .get("/2.0/mlflow/users/list", list_users, own)
        .get("/3.0/mlflow/users/current/permissions", current_permissions, own)
        .get("/3.0/mlflow/users/permissions/list", user_permissions, own)
        // Granting needs MANAGE on the resource (or admin): the handler checks, since the
        // resource's type is in the body.
        .post("/3.0/mlflow/users/permissions/grant", grant, change)
        .post("/3.0/mlflow/users/permissions/revoke", revoke, change)
        .get("/3.0/mlflow/users/permissions/get", get_permission, own)
        .get("/3.0/mlflow/users/roles/list", user_roles, own)
        .post("/3.0/mlflow/roles/create", create_role, Policy::Admin)
        .get("/3.0/mlflow/roles/get", get_role, Policy::Admin)
        .get("/3.0/mlflow/roles/list", list_roles, Policy::Admin)
        .patch("/3.0/mlflow/roles/update", update_role, Policy::Admin)
        .delete("/3.0/mlflow/roles/delete", delete_role, Policy::Admin)
        .post("/3.0/mlflow/roles/permissions/add", add_role_permission, Policy::Admin)
        .delete("/3.0/mlflow/roles/permissions/remove", remove_role_permission, Policy::Admin)
        .get("/3.0/mlflow/roles/permissions/list", list_role_permissions, Policy::Admin)
        .patch("/3.0/mlflow/roles/permissions/update", update_role_permission, Policy::Admin)
        .post("/3.0/mlflow/roles/assign", assign_role, Policy::Admin)
        .delete("/3.0/mlflow/roles/unassign", unassign_role, Policy::Admin)
        .get("/3.0/mlflow/roles/users/list", role_users, Policy::Admin)
        .post("/shipyard/tokens/create", create_token, change)
        .get("/shipyard/tokens/list", list_tokens, own)
        .post("/shipyard/tokens/revoke", revoke_token, change)
        .post("/shipyard/certificates/add", add_certificate, Policy::Admin)
        .get("/shipyard/certificates/list", list_certificates, own)
        .post("/shipyard/certificates/remove", remove_certificate, Policy::Admin)
}

/// The caller, or 400 when authentication is off.
fn caller(caller: &Caller) -> Result<&Access, ApiError> {
    caller.as_ref().map(|Extension(a)| a).ok_or_else(|| {
        ApiError(Error::invalid("authentication is off on this server: start it with --auth to manage users"))
    })
}

fn gate(s: &AppState) -> Result<&std::sync::Arc<shipyard_auth::Authority>, ApiError> {
    s.auth.as_ref().ok_or_else(|| ApiError(Error::invalid("authentication is off on this server")))
}

fn user_json(user: &User) -> Value {
    json!({"id": user.id, "username": user.username, "is_admin": user.is_admin})
}

/// Admins may act on anyone; others on themselves only.
fn self_or_admin(access: &Access, username: &str) -> Result<(), ApiError> {
    if access.principal.user.is_admin || access.principal.user.username == username {
        Ok(())
    } else {
        Err(ApiError(Error::PermissionDenied(format!(
            "Permission denied: {} may not act on user '{username}'",
            access.principal.user.username
        ))))
    }
}

#[derive(Deserialize)]
pub(crate) struct UserRequest {
    #[serde(default, deserialize_with = "opt_string")]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    current_password: Option<String>,
    #[serde(default)]
    is_admin: Option<Value>,
}

async fn create_user(State(s): State<AppState>, c: Caller, MlflowRequest(r): MlflowRequest<UserRequest>) -> JsonResult {
    caller(&c)?;
    let username = required(&r.username, "username")?;
    let password = required(&r.password, "password")?;
    let user = shipyard_auth::accounts::create_user(&s.db, username, password, false).await?;
    Ok(Json(json!({ "user": user_json(&user) })))
}

async fn get_user(State(s): State<AppState>, c: Caller, MlflowRequest(r): MlflowRequest<UserRequest>) -> JsonResult {
    let access = caller(&c)?;
    let username = required(&r.username, "username")?;
    self_or_admin(access, username)?;
    let user = s.db.get_user(username).await?;
    Ok(Json(json!({ "user": user_json(&user) })))
}

async fn current_user(c: Caller) -> JsonResult {
    let access = caller(&c)?;
    Ok(Json(json!({ "user": user_json(&access.principal.user), "is_basic_auth": true })))
}

async fn update_password(
    State(s): State<AppState>,
    c: Caller,
    MlflowRequest(r): MlflowRequest<UserRequest>,
) -> JsonResult {
    let access = caller(&c)?;
    let username = required(&r.username, "username")?;
    let password = required(&r.password, "password")?;
    self_or_admin(access, username)?;
    // Users changing their own password prove they know the current one (ASVS 6.2.3).
    let current = if access.principal.user.username == username {
        let current =
            r.current_password.as_deref().filter(|p| !p.is_empty()).ok_or_else(|| {
                ApiError(Error::invalid("Current password is required when changing your own password."))
            })?;
        if current == password {
            return Err(ApiError(Error::invalid("New password must differ from the current password.")));
        }
        Some(current)
    } else {
        None
    };
    shipyard_auth::accounts::change_password(gate(&s)?.authenticator(), username, password, current).await?;
    empty()
}

async fn update_admin(
    State(s): State<AppState>,
    c: Caller,
    MlflowRequest(r): MlflowRequest<UserRequest>,
) -> JsonResult {
    caller(&c)?;
    let username = required(&r.username, "username")?;
    let is_admin = match &r.is_admin {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("true") => true,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("false") => false,
        _ => return Err(ApiError::invalid("is_admin must be true or false")),
    };
    s.db.set_admin(username, is_admin).await?;
    gate(&s)?.authenticator().forget(username);
    empty()
}

async fn delete_user(State(s): State<AppState>, c: Caller, MlflowRequest(r): MlflowRequest<UserRequest>) -> JsonResult {
    let access = caller(&c)?;
    let username = required(&r.username, "username")?;
    if access.principal.user.username == username {
        return Err(ApiError(Error::BadRequest(
            "Users cannot delete their own account. Ask another admin to delete this user instead.".into(),
        )));
    }
    s.db.delete_user(username).await?;
    gate(&s)?.authenticator().forget(username);
    gate(&s)?.forget_grants();
    empty()
}

async fn list_users(State(s): State<AppState>, c: Caller) -> JsonResult {
    caller(&c)?;
    let users: Vec<Value> = s.db.list_users().await?.iter().map(user_json).collect();
    Ok(Json(json!({ "users": users })))
}

/// Every grant of `user`, across their roles (their own role's too), as MLflow lists them.
async fn permission_rows(s: &AppState, user: &User) -> Result<Value, ApiError> {
    let mut rows = Vec::new();
    let mut roles = s.db.user_roles(user.id).await?;
    if let Some(personal) = s.db.personal_role_of(user.id).await? {
        roles.push(personal);
    }
    for role in roles {
        for p in s.db.list_role_permissions(role.id).await? {
            rows.push(json!({
                "role_id": role.id,
                "role_name": role.name,
                "workspace": role.workspace,
                "resource_type": p.resource_type,
                "resource_pattern": p.resource_pattern,
                "permission": p.permission,
            }));
        }
    }
    Ok(json!({"is_admin": user.is_admin, "permissions": rows}))
}

async fn current_permissions(State(s): State<AppState>, c: Caller) -> JsonResult {
    let access = caller(&c)?;
    Ok(Json(permission_rows(&s, &access.principal.user).await?))
}

async fn user_permissions(
    State(s): State<AppState>,
    c: Caller,
    MlflowRequest(r): MlflowRequest<UserRequest>,
) -> JsonResult {
    let access = caller(&c)?;
    let username = required(&r.username, "username")?;
    self_or_admin(access, username)?;
    let user = s.db.get_user(username).await?;
    Ok(Json(permission_rows(&s, &user).await?))
}

#[derive(Deserialize)]
pub(crate) struct GrantRequest {
    #[serde(default, deserialize_with = "opt_string")]
    username: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    resource_type: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    resource_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    permission: Option<String>,
}

/// The resource a grant request names; the caller must MANAGE it (or be an admin).
fn granted_resource(access: &Access, r: &GrantRequest) -> Result<(ResourceType, String), ApiError> {
    let kind = ResourceType::parse(required(&r.resource_type, "resource_type")?).map_err(ApiError::invalid)?;
    let id = required(&r.resource_id, "resource_id")?.to_owned();
    if kind == ResourceType::Workspace && id != "*" {
        return Err(ApiError::invalid("a workspace permission's resource_id must be '*'"));
    }
    let manages = if id == "*" || kind == ResourceType::Workspace {
        access.principal.user.is_admin
    } else {
        access.can(kind, &id, Capability::Manage)
    };
    if !manages {
        return Err(ApiError(Error::PermissionDenied(format!(
            "Permission denied: {} does not manage {} '{id}'",
            access.principal.user.username,
            kind.as_str()
        ))));
    }
    Ok((kind, id))
}

async fn grant(State(s): State<AppState>, c: Caller, MlflowRequest(r): MlflowRequest<GrantRequest>) -> JsonResult {
    let access = caller(&c)?;
    let (kind, id) = granted_resource(access, &r)?;
    let permission = Permission::parse(required(&r.permission, "permission")?).map_err(ApiError::invalid)?;
    if kind == ResourceType::Workspace && !matches!(permission, Permission::Use | Permission::Manage) {
        return Err(ApiError::invalid("a workspace permission is USE or MANAGE"));
    }
    let user = s.db.get_user(required(&r.username, "username")?).await?;
    s.db.grant_user(user.id, kind.as_str(), &id, permission.as_str()).await?;
    gate(&s)?.forget_grants();
    empty()
}

async fn revoke(State(s): State<AppState>, c: Caller, MlflowRequest(r): MlflowRequest<GrantRequest>) -> JsonResult {
    let access = caller(&c)?;
    let (kind, id) = granted_resource(access, &r)?;
    let user = s.db.get_user(required(&r.username, "username")?).await?;
    s.db.revoke_user(user.id, kind.as_str(), &id).await?;
    gate(&s)?.forget_grants();
    empty()
}

async fn get_permission(
    State(s): State<AppState>,
    c: Caller,
    MlflowRequest(r): MlflowRequest<GrantRequest>,
) -> JsonResult {
    let access = caller(&c)?;
    let username = required(&r.username, "username")?;
    let kind = ResourceType::parse(required(&r.resource_type, "resource_type")?).map_err(ApiError::invalid)?;
    let id = required(&r.resource_id, "resource_id")?;
    if !(access.principal.user.is_admin
        || access.principal.user.username == username
        || access.can(kind, id, Capability::Manage))
    {
        return Err(ApiError(Error::PermissionDenied(format!(
            "Permission denied: {} may not read {username}'s permissions",
            access.principal.user.username
        ))));
    }
    let user = s.db.get_user(username).await?;
    let permission = if user.is_admin {
        Permission::Manage
    } else {
        let grants = gate(&s)?.grants(user.id).await?;
        shipyard_auth::permission::resolve(&grants, kind, id, gate(&s)?.default_permission())
    };
    Ok(Json(json!({"allowed": permission.allows(Capability::Use), "permission": permission.as_str()})))
}

async fn user_roles(State(s): State<AppState>, c: Caller, MlflowRequest(r): MlflowRequest<UserRequest>) -> JsonResult {
    let access = caller(&c)?;
    let username = required(&r.username, "username")?;
    self_or_admin(access, username)?;
    let user = s.db.get_user(username).await?;
    let roles: Vec<Value> = s.db.user_roles(user.id).await?.iter().map(|r| json!(r)).collect();
    Ok(Json(json!({ "roles": roles })))
}

#[derive(Deserialize)]
pub(crate) struct RoleRequest {
    #[serde(default, deserialize_with = "opt_i64")]
    role_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64")]
    role_permission_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    workspace: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    description: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    resource_type: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    resource_pattern: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    permission: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    username: Option<String>,
}

fn role_id(r: &RoleRequest) -> Result<i64, ApiError> {
    r.role_id.ok_or_else(|| ApiError::invalid("Missing value for required parameter 'role_id'"))
}

/// A role as MLflow renders it, with its permissions.
async fn role_json(s: &AppState, role: &shipyard_store::identity::Role) -> Result<Value, ApiError> {
    let permissions = s.db.list_role_permissions(role.id).await?;
    Ok(json!({
        "id": role.id,
        "name": role.name,
        "workspace": role.workspace,
        "description": role.description,
        "permissions": permissions,
    }))
}

async fn create_role(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let workspace = r.workspace.as_deref().unwrap_or(DEFAULT_WORKSPACE);
    if workspace != DEFAULT_WORKSPACE {
        return Err(ApiError::invalid(format!("Shipyard has one workspace, '{DEFAULT_WORKSPACE}'")));
    }
    let role = s.db.create_role(workspace, required(&r.name, "name")?, r.description.as_deref()).await?;
    Ok(Json(json!({ "role": role_json(&s, &role).await? })))
}

async fn get_role(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let role = s.db.get_role(role_id(&r)?).await?;
    Ok(Json(json!({ "role": role_json(&s, &role).await? })))
}

async fn list_roles(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let mut roles = Vec::new();
    for role in s.db.list_roles(r.workspace.as_deref()).await? {
        roles.push(role_json(&s, &role).await?);
    }
    Ok(Json(json!({ "roles": roles })))
}

async fn update_role(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let role = s.db.update_role(role_id(&r)?, r.name.as_deref(), r.description.as_deref()).await?;
    Ok(Json(json!({ "role": role_json(&s, &role).await? })))
}

async fn delete_role(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    s.db.delete_role(role_id(&r)?).await?;
    gate(&s)?.forget_grants();
    empty()
}

/// A role permission's type, pattern and level, checked.
fn role_grant(r: &RoleRequest) -> Result<(ResourceType, String, Permission), ApiError> {
    let kind = ResourceType::parse(required(&r.resource_type, "resource_type")?).map_err(ApiError::invalid)?;
    let pattern = required(&r.resource_pattern, "resource_pattern")?.to_owned();
    let permission = Permission::parse(required(&r.permission, "permission")?).map_err(ApiError::invalid)?;
    if kind == ResourceType::Workspace
        && (pattern != "*" || !matches!(permission, Permission::Use | Permission::Manage))
    {
        return Err(ApiError::invalid("a workspace permission is USE or MANAGE on '*'"));
    }
    Ok((kind, pattern, permission))
}

async fn add_role_permission(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let (kind, pattern, permission) = role_grant(&r)?;
    let added = s.db.add_role_permission(role_id(&r)?, kind.as_str(), &pattern, permission.as_str()).await?;
    gate(&s)?.forget_grants();
    Ok(Json(json!({ "role_permission": added })))
}

async fn remove_role_permission(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let id = r
        .role_permission_id
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'role_permission_id'"))?;
    s.db.remove_role_permission(id).await?;
    gate(&s)?.forget_grants();
    empty()
}

async fn list_role_permissions(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let permissions = s.db.list_role_permissions(role_id(&r)?).await?;
    Ok(Json(json!({ "role_permissions": permissions })))
}

async fn update_role_permission(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let id = r
        .role_permission_id
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'role_permission_id'"))?;
    let permission = Permission::parse(required(&r.permission, "permission")?).map_err(ApiError::invalid)?;
    let updated = s.db.update_role_permission(id, permission.as_str()).await?;
    gate(&s)?.forget_grants();
    Ok(Json(json!({ "role_permission": updated })))
}

async fn assign_role(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let user = s.db.get_user(required(&r.username, "username")?).await?;
    let assignment = s.db.assign_role(user.id, role_id(&r)?).await?;
    gate(&s)?.forget_grants();
    Ok(Json(json!({ "assignment": assignment })))
}

async fn unassign_role(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let user = s.db.get_user(required(&r.username, "username")?).await?;
    s.db.unassign_role(user.id, role_id(&r)?).await?;
    gate(&s)?.forget_grants();
    empty()
}

async fn role_users(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<RoleRequest>) -> JsonResult {
    let assignments = s.db.role_users(role_id(&r)?).await?;
    Ok(Json(json!({ "assignments": assignments })))
}

#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    #[serde(default, deserialize_with = "opt_string")]
    name: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, deserialize_with = "opt_i64")]
    expires_in_days: Option<i64>,
    /// Admins may make a token for another user.
    #[serde(default, deserialize_with = "opt_string")]
    username: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    id: Option<String>,
}

/// The user a token request is about: the caller, or (admins only) the named user.
async fn token_owner(s: &AppState, access: &Access, r: &TokenRequest) -> Result<User, ApiError> {
    match r.username.as_deref() {
        Some(name) if name != access.principal.user.username => {
            self_or_admin(access, name)?;
            Ok(s.db.get_user(name).await?)
        }
        _ => Ok(access.principal.user.clone()),
    }
}

/// `POST /api/shipyard/tokens/create {name, scopes?, expires_in_days?, username?}` →
/// `{"token": "shp_...", "record": {...}}`: the token is shown this once.
async fn create_token(
    State(s): State<AppState>,
    c: Caller,
    MlflowRequest(r): MlflowRequest<TokenRequest>,
) -> JsonResult {
    let access = caller(&c)?;
    // A token cannot outgrow the credential that makes it.
    if !access.principal.scopes.is_all() {
        return Err(ApiError(Error::PermissionDenied("a scoped token cannot make tokens".into())));
    }
    let owner = token_owner(&s, access, &r).await?;
    let name = required(&r.name, "name")?;
    let issued = shipyard_auth::accounts::issue_token(&s.db, &owner, name, &r.scopes, r.expires_in_days).await?;
    Ok(Json(json!({ "token": issued.token, "record": issued.record })))
}

async fn list_tokens(
    State(s): State<AppState>,
    c: Caller,
    MlflowRequest(r): MlflowRequest<TokenRequest>,
) -> JsonResult {
    let access = caller(&c)?;
    let owner = token_owner(&s, access, &r).await?;
    Ok(Json(json!({ "tokens": s.db.list_tokens(owner.id).await? })))
}

async fn revoke_token(
    State(s): State<AppState>,
    c: Caller,
    MlflowRequest(r): MlflowRequest<TokenRequest>,
) -> JsonResult {
    let access = caller(&c)?;
    let owner = token_owner(&s, access, &r).await?;
    let revoked = s.db.revoke_token(owner.id, required(&r.id, "id")?).await?;
    Ok(Json(json!({ "record": revoked })))
}

#[derive(Deserialize)]
pub(crate) struct CertificateRequest {
    #[serde(default, deserialize_with = "opt_string")]
    username: Option<String>,
    /// The certificate's SHA-256 (hex; colons allowed).
    #[serde(default, deserialize_with = "opt_string")]
    sha256: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    name: Option<String>,
}

/// `POST /api/shipyard/certificates/add {username, sha256, name?}` (admins) →
/// `{"certificate": {...}}`: a TLS client presenting that certificate (issued by the server's
/// `--tls-client-ca`) is signed in as the user, with everything the user may do.
async fn add_certificate(State(s): State<AppState>, MlflowRequest(r): MlflowRequest<CertificateRequest>) -> JsonResult {
    let user = s.db.get_user(required(&r.username, "username")?).await?;
    let name = r.name.as_deref().unwrap_or("client certificate");
    let added = s.db.add_client_certificate(user.id, required(&r.sha256, "sha256")?, name).await?;
    Ok(Json(json!({ "certificate": added })))
}

/// `GET /api/shipyard/certificates/list[?username=]` → `{"certificates": [...]}`: the caller's
/// (an admin's: a named user's, or everyone's).
async fn list_certificates(
    State(s): State<AppState>,
    c: Caller,
    MlflowRequest(r): MlflowRequest<CertificateRequest>,
) -> JsonResult {
    let access = caller(&c)?;
    let user_id = match r.username.as_deref() {
        Some(name) => {
            self_or_admin(access, name)?;
            Some(s.db.get_user(name).await?.id)
        }
        None if access.principal.user.is_admin => None,
        None => Some(access.principal.user.id),
    };
    Ok(Json(json!({ "certificates": s.db.list_client_certificates(user_id).await? })))
}

/// `POST /api/shipyard/certificates/remove {sha256}` (admins): the certificate signs nobody in
/// from the next request on.
async fn remove_certificate(
    State(s): State<AppState>,
    MlflowRequest(r): MlflowRequest<CertificateRequest>,
) -> JsonResult {
    s.db.remove_client_certificate(required(&r.sha256, "sha256")?).await?;
    empty()
}
