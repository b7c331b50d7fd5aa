//! API tokens: `bst_<id>_<secret>`. The id (48 bits, hex) names the token in listings and
//! revocations; the secret carries 256 random bits. Only the SHA-256 of the whole token is
//! stored: a salted slow hash adds nothing for a uniformly random 256-bit secret, and a fast
//! hash lets every request be checked without a key-derivation cost.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AuthError;

const PREFIX: &str = "bst_";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

/// A freshly minted token. `secret` is shown to its owner once and never stored.
pub struct NewToken {
    pub id: String,
    pub secret: String,
    pub hash: TokenHash,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a token, hex-encoded: what the store keeps.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    /// Compares in time independent of where the hashes differ.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

pub fn generate() -> NewToken {
    let mut rng = rand::rng();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash(&secret);
    NewToken { id, secret, hash }
}

pub fn hash(token: &str) -> TokenHash {
    TokenHash(hex::encode(Sha256::digest(token.as_bytes())))
}

/// Whether `text` has the shape of a Bastion API token (as opposed to a JWT), and its id.
pub fn parse(text: &str) -> Result<&str, AuthError> {
    let rest = text
        .strip_prefix(PREFIX)
        .ok_or(AuthError::Malformed("not a Bastion token"))?;
    let (id, secret) = rest
        .split_once('_')
        .ok_or(AuthError::Malformed("token has no secret part"))?;
    let id_ok = id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok || !secret_ok {
        return Err(AuthError::Malformed("token is not well-formed"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert_eq!(parse(&a.secret), Ok(a.id.as_str()));
        assert!(a.hash.matches(&hash(&a.secret)));
        assert!(!a.hash.matches(&b.hash));
        // 256 bits of secret, base64url without padding.
        assert_eq!(a.secret.len(), 4 + 12 + 1 + 43);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let t = generate().secret;
        for bad in [
            "",
            "bst_",
            "abc",
            "bst_zzzzzzzzzzzz_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &t[..t.len() - 1],
            &format!("{t}A"),
            &t.replace("bst_", "bsx_"),
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let t = generate();
        let shown = format!("{t:?} {:?}", t.hash);
        assert!(!shown.contains(&t.secret));
        assert!(!shown.contains(&t.hash.0));
    }
}
