//! Passwords and API tokens: how they are made, stored and checked.
//!
//! - A **password** is stored as an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`,
//!   OWASP's parameters; about 25 ms to verify here, which is why verified credentials are
//!   cached: [`crate::cache`]). The policy is MLflow 3.17's length rule (at least 12
//!   characters) plus ASVS 6.2: no composition rules, long passphrases allowed (up to 256
//!   characters), never truncated, not the user's name, not a well-known password.
//! - An **API token** is `shp_<id>_<secret>`: a 12-character public id the store looks it up by,
//!   and 43 characters of base64url over 256 random bits (two v4 UUIDs' worth: 244 bits from the
//!   operating system's generator). Only its SHA-256 is stored (ASVS 6.5.2 accepts a fast hash
//!   for secrets of 112 bits or more); a token is shown once, when made.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use sha2::Digest;
use subtle::ConstantTimeEq;

/// Shortest password accepted (MLflow 3.17's rule).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted: long passphrases welcome, unbounded hashing work not.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Passwords every guessing list starts with (and MLflow's old default), refused whatever
/// their length.
const COMMON: &[&str] = &[
    "password1234",
    "password12345",
    "password123456",
    "123456789012",
    "1234567890123",
    "qwertyuiop12",
    "qwertyuiopasdf",
    "administrator",
    "administrator1",
    "passwordpassword",
    "iloveyou1234",
    "letmein12345",
    "changeme1234",
    "welcome12345",
    "shipyard1234",
    "mlflow123456",
    "111111111111",
    "000000000000",
    "aaaaaaaaaaaa",
    "abcdefghijkl",
    "abc123456789",
    "1q2w3e4r5t6y",
    "qazwsxedcrfv",
    "trustno1trustno1",
    "correcthorsebatterystaple",
];

/// Why `password` may not be used by `username`, or `Ok`.
pub fn check_password_policy(username: &str, password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!("the password must be at least {MIN_PASSWORD_CHARS} characters long"));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(format!("the password must be at most {MAX_PASSWORD_CHARS} characters long"));
    }
    let lower = password.to_lowercase();
    if lower == username.to_lowercase() {
        return Err("the password must not be the user name".to_owned());
    }
    let plain: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    let first = plain.chars().next();
    if COMMON.contains(&plain.as_str()) || plain.chars().all(|c| Some(c) == first) {
        return Err("the password is too easy to guess: choose another".to_owned());
    }
    Ok(())
}

/// The argon2id PHC string of `password` (a fresh salt each time).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("hashing the password failed: {e}"))
}

/// Whether `password` matches `stored` (a PHC string); a malformed `stored` matches nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

/// A hash to verify against when the user does not exist, so an unknown name costs what a
/// known one does (no user enumeration by timing).
pub(crate) fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("a decoy that matches no request").unwrap_or_default())
}

/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "shp_";

/// A token just made: the text to hand to its owner once, and what the store keeps.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The public id (12 lowercase hex characters).
    pub id: String,
    /// The whole token, shown once.
    pub token: String,
    /// SHA-256 of the whole token, hex: what the store keeps.
    pub digest: String,
}

/// A fresh token.
pub fn new_token() -> NewToken {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut random = [0u8; 32];
    random[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    random[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    let digest = token_digest(&token);
    NewToken { id, token, digest }
}

/// SHA-256 of a token, hex.
pub fn token_digest(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The public id of a token-shaped string, or `None` when it is not one.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43).then_some(id)
}

/// Whether `token` hashes to `digest`, compared in constant time.
pub fn token_matches(token: &str, digest: &str) -> bool {
    token_digest(token).as_bytes().ct_eq(digest.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_wants_length_not_composition_and_refuses_the_obvious() {
        assert!(check_password_policy("ana", "short").unwrap_err().contains("at least 12"));
        assert!(check_password_policy("ana", "correct horse battery").is_ok());
        assert!(check_password_policy("ana", "all lowercase words are fine").is_ok());
        assert!(check_password_policy("ana", &"x".repeat(300)).unwrap_err().contains("at most"));
        assert!(check_password_policy("anastasia-lo", "Anastasia-Lo").unwrap_err().contains("user name"));
        assert!(check_password_policy("ana", "password1234").unwrap_err().contains("guess"));
        assert!(check_password_policy("ana", "zzzzzzzzzzzzzzzz").unwrap_err().contains("guess"));
        // Characters, not bytes: twelve accented letters are twelve.
        assert!(check_password_policy("ana", "ééééééééééée").is_ok());
    }

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(hash_password("correct horse battery").expect("hash"), hash, "salted");
    }

    #[test]
    fn tokens_are_unique_recognisable_and_stored_only_as_digests() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with("shp_"));
        assert_eq!(token_id(&a.token), Some(a.id.as_str()));
        assert!(token_matches(&a.token, &a.digest));
        assert!(!token_matches(&b.token, &a.digest));
        assert!(!a.digest.contains(&a.token[16..]));
        assert_eq!(token_id("shp_short_x"), None);
        assert_eq!(token_id("a password"), None);
    }
}
