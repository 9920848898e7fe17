//! Who is calling: credentials from an `Authorization` header checked against the store.
//!
//! - `Basic user:password` (what the `mlflow` client sends for `MLFLOW_TRACKING_USERNAME` /
//!   `PASSWORD`): the argon2id check costs ~25 ms, so a verified pair is remembered for
//!   [`AuthSettings::cache_ttl`] under an HMAC of the pair with a per-process random key (the
//!   cache never holds a password, and a changed password misses it). At most
//!   [`AuthSettings::hash_concurrency`] checks run at once, on the blocking pool: a flood of
//!   wrong passwords queues there instead of taking every core. Failed attempts are throttled
//!   ([`crate::throttle`]). An unknown user name costs the same check as a known one.
//! - `Bearer shp_...` (`MLFLOW_TRACKING_TOKEN`), or a token as the Basic password (with its
//!   owner's name, or any name): looked up by its public id and compared by digest, on every
//!   request, so revocation and expiry take effect at once.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use lru::LruCache;
use shipyard_core::entities::now_millis;
use shipyard_store::Database;
use shipyard_store::identity::User;

use crate::scope::Scopes;
use crate::secret;
use crate::throttle::Throttle;

/// Credentials as a request presented them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
    /// A TLS client certificate the listener verified against `--tls-client-ca`: its SHA-256.
    Certificate(String),
}

impl std::fmt::Debug for Credentials {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Bearer(_) => write!(f, "Bearer(***)"),
            Credentials::Certificate(sha256) => write!(f, "Certificate({sha256})"),
        }
    }
}

impl Credentials {
    /// Reads an `Authorization` header value; `Err` names what is wrong with it.
    pub fn from_header(value: &str) -> Result<Credentials, AuthError> {
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AuthError::Unauthenticated("the Basic credentials are not base64 of UTF-8".into()))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| AuthError::Unauthenticated("the Basic credentials lack a ':'".into()))?;
            Ok(Credentials::Basic { username: username.to_owned(), password: password.to_owned() })
        } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Ok(Credentials::Bearer(rest.to_owned()))
        } else {
            Err(AuthError::Unauthenticated("only Basic and Bearer credentials are accepted".into()))
        }
    }
}

/// How a principal proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Password,
    /// An API token, by its public id.
    Token(String),
    /// A client certificate, by its SHA-256.
    Certificate(String),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub method: Method,
    /// What the credential may be used for (a password or session: everything the user may do).
    pub scopes: Scopes,
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 401: no credentials, or wrong ones (the message says which, never which part).
    #[error("{0}")]
    Unauthenticated(String),
    /// 429: too many failures; try again after the wait.
    #[error("too many failed logins: try again in {} s", .retry_after.as_millis().div_ceil(1000).max(1))]
    Throttled { retry_after: Duration },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] shipyard_core::Error),
}

/// Tunables of authentication.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// How long a verified password is remembered.
    pub cache_ttl: Duration,
    /// Most remembered verifications.
    pub cache_capacity: usize,
    /// Most password checks running at once.
    pub hash_concurrency: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings { cache_ttl: Duration::from_secs(60), cache_capacity: 10_000, hash_concurrency: 2 }
    }
}

struct Remembered {
    user: User,
    at: Instant,
}

/// Checks credentials.
pub struct Authenticator {
    db: Database,
    settings: AuthSettings,
    /// Key of the cache's HMAC: random per process.
    cache_key: [u8; 32],
    verified: Mutex<LruCache<[u8; 32], Remembered>>,
    hashing: tokio::sync::Semaphore,
    throttle: Throttle,
    /// Tokens whose `last_used_time` was written recently (written at most once a minute).
    touched: Mutex<LruCache<String, Instant>>,
}

const WRONG: &str = "invalid username or password";

impl Authenticator {
    pub fn new(db: Database, settings: AuthSettings) -> Arc<Authenticator> {
        let mut cache_key = [0u8; 32];
        cache_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        cache_key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let capacity = NonZeroUsize::new(settings.cache_capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Arc::new(Authenticator {
            db,
            hashing: tokio::sync::Semaphore::new(settings.hash_concurrency.max(1)),
            settings,
            cache_key,
            verified: Mutex::new(LruCache::new(capacity)),
            throttle: Throttle::default(),
            touched: Mutex::new(LruCache::new(NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN))),
        })
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Who `credentials` belong to, for a request from `client`.
    pub async fn authenticate(&self, credentials: &Credentials, client: IpAddr) -> Result<Principal, AuthError> {
        match credentials {
            Credentials::Bearer(token) => self.token(token, None, client).await,
            Credentials::Basic { username, password } if secret::token_id(password).is_some() => {
                self.token(password, Some(username), client).await
            }
            Credentials::Basic { username, password } => self.password(username, password, client).await,
            Credentials::Certificate(sha256) => match self.db.certificate_user(sha256).await? {
                Some(user) => {
                    Ok(Principal { user, method: Method::Certificate(sha256.clone()), scopes: Scopes::all() })
                }
                None => {
                    tracing::warn!(target: "shipyard::auth", %client, certificate = %sha256, "certificate bound to no user");
                    Err(AuthError::Unauthenticated(format!(
                        "the client certificate {sha256} is bound to no user (an admin binds it with \
                         /api/shipyard/certificates/add)"
                    )))
                }
            },
        }
    }

    fn cache_slot(&self, username: &str, password: &str) -> [u8; 32] {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.cache_key).expect("HMAC takes any key");
        mac.update(username.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    async fn password(&self, username: &str, password: &str, client: IpAddr) -> Result<Principal, AuthError> {
        let slot = self.cache_slot(username, password);
        {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = verified.get(&slot) {
                if hit.at.elapsed() < self.settings.cache_ttl {
                    return Ok(Principal { user: hit.user.clone(), method: Method::Password, scopes: Scopes::all() });
                }
                verified.pop(&slot);
            }
        }
        if let Err(retry_after) = self.throttle.check(username, client) {
            return Err(AuthError::Throttled { retry_after });
        }
        let found = self.db.user_credentials(username).await?;
        let stored = found.as_ref().map_or_else(|| secret::decoy_hash().to_owned(), |c| c.password_hash.clone());
        let matches = {
            let _permit = self.hashing.acquire().await.map_err(|_| AuthError::Unauthenticated(WRONG.into()))?;
            let password = password.to_owned();
            tokio::task::spawn_blocking(move || secret::verify_password(&password, &stored)).await.unwrap_or(false)
        };
        match found {
            Some(credentials) if matches => {
                self.throttle.succeeded(username);
                let user = credentials.user;
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(slot, Remembered { user: user.clone(), at: Instant::now() });
                tracing::debug!(target: "shipyard::auth", user = %user.username, "password accepted");
                Ok(Principal { user, method: Method::Password, scopes: Scopes::all() })
            }
            _ => {
                self.throttle.failed(username, client);
                tracing::warn!(target: "shipyard::auth", user = %username, %client, "password refused");
                Err(AuthError::Unauthenticated(WRONG.into()))
            }
        }
    }

    async fn token(&self, token: &str, username: Option<&str>, client: IpAddr) -> Result<Principal, AuthError> {
        let refused = |why: &str| {
            tracing::warn!(target: "shipyard::auth", %client, "token refused: {why}");
            AuthError::Unauthenticated(format!("invalid token: {why}"))
        };
        let id = secret::token_id(token).ok_or_else(|| refused("not a Shipyard token"))?;
        let throttle_name = format!("token:{id}");
        if let Err(retry_after) = self.throttle.check(&throttle_name, client) {
            return Err(AuthError::Throttled { retry_after });
        }
        let Some(found) = self.db.token_credentials(id).await? else {
            self.throttle.failed(&throttle_name, client);
            return Err(refused("unknown"));
        };
        if !secret::token_matches(token, &found.digest) {
            self.throttle.failed(&throttle_name, client);
            return Err(refused("unknown"));
        }
        let now = now_millis();
        if found.token.revoked_time.is_some() {
            return Err(refused("revoked"));
        }
        if found.token.expires_time.is_some_and(|t| t <= now) {
            return Err(refused("expired"));
        }
        // The mlflow client sends a user name with a token given as the password; any name is
        // accepted there (mlflow-oidc-auth's convention), but a different user's name is not.
        if let Some(name) = username
            && !name.is_empty()
            && name != found.owner.username
            && name != "token"
        {
            return Err(refused("it belongs to another user"));
        }
        self.touch(&found.token.id, now);
        let scopes = Scopes::parse(&found.token.scopes).map_err(|e| refused(&e))?;
        Ok(Principal { user: found.owner, method: Method::Token(found.token.id), scopes })
    }

    /// Writes a token's last use, at most once a minute per token, without waiting for it.
    fn touch(&self, id: &str, now: i64) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            if touched.get(id).is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
                return;
            }
            touched.put(id.to_owned(), Instant::now());
        }
        let (db, id) = (self.db.clone(), id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = db.touch_token(&id, now).await {
                tracing::debug!("recording token {id}'s use: {e}");
            }
        });
    }

    /// Forgets remembered verifications of `username` (their password, admin flag or existence
    /// changed). Other replicas forget within the cache's time to live.
    pub fn forget(&self, username: &str) {
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, r| r.user.username != username);
    }
}

/// `LruCache` has no `retain`; this one walks and pops.
trait Retain<K, V> {
    fn retain(&mut self, keep: impl FnMut(&K, &V) -> bool);
}

impl<K: std::hash::Hash + Eq + Clone, V> Retain<K, V> for LruCache<K, V> {
    fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let gone: Vec<K> = self.iter().filter(|(k, v)| !keep(k, v)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            self.pop(&k);
        }
    }
}
