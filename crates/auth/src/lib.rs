//! Shipyard's identities and permissions, and the gate that enforces them.
//!
//! - [`secret`]: passwords (argon2id, the policy) and API tokens (made, digested, recognised).
//! - [`authenticate`]: credentials from a request checked against the store, with a cache of
//!   verified passwords and a throttle on failures ([`throttle`]).
//! - [`permission`]: MLflow 3.17's levels (READ, USE, EDIT, MANAGE, NO_PERMISSIONS, DENY),
//!   resource types, and how grants resolve; [`scope`]: what a token may be used for.
//! - [`policy`]: every route's policy, declared with the route ([`policy::Routes`]).
//! - [`gate`]: the middleware: authenticate, locate the resource, decide; [`gate::Access`]
//!   for handlers that filter what a caller sees.
//! - [`accounts`]: making users and tokens, changing passwords, the first admin.
//! - [`session`]: the web UI's login sessions (a short-lived token in a `__Host-` cookie).
//!
//! The store keeps the rows (`shipyard_store::identity`); this crate makes and judges them.

pub mod accounts;
pub mod authenticate;
pub mod gate;
pub mod permission;
pub mod policy;
pub mod scope;
pub mod secret;
pub mod session;
pub mod throttle;

pub use authenticate::{AuthError, AuthSettings, Authenticator, Credentials, Principal};
pub use gate::{Access, Authority, CreatorGrants, Gate, Visibility};
pub use permission::{Capability, Grant, Permission, ResourceType};
pub use policy::{Locator, Policy, PolicyTable, Requirement, Routes};
