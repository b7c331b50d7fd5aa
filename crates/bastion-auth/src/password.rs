//! Passwords for HTTP Basic: argon2id (OWASP's minimum parameters: 19 MiB, 2 passes) in PHC
//! strings, so parameters can be raised later without invalidating stored hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::AuthError;

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 1024;

fn hasher() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|_| AuthError::Hashing)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Checks the policy and hashes `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(AuthError::WeakPassword("use at least 12 characters"));
    }
    if password.len() > MAX_LENGTH {
        return Err(AuthError::WeakPassword("at most 1024 bytes"));
    }
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| AuthError::Hashing)?;
    Ok(hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| AuthError::Hashing)?
        .to_string())
}

/// Whether `password` matches `phc`. The comparison inside argon2 is constant-time.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LENGTH {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    hasher()
        .map(|h| h.verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// Spends the time of one verification, so that an unknown user name answers as slowly as a
/// wrong password and names cannot be enumerated by timing.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("not-a-real-password-at-all").unwrap_or_default());
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterx", &a));
        assert!(!verify("correct horse battery", "not a phc string"));
    }

    #[test]
    fn policy_refuses_short_and_huge_passwords() {
        assert!(matches!(hash("short"), Err(AuthError::WeakPassword(_))));
        assert!(matches!(
            hash(&"x".repeat(2000)),
            Err(AuthError::WeakPassword(_))
        ));
    }
}
