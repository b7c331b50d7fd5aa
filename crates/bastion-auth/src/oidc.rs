//! Bearer JWTs from an external OpenID Connect identity provider. A token is accepted only if
//! its signature verifies against a key of the configured JWKS (asymmetric algorithms only:
//! never `none`, never an HMAC secret an attacker could derive from a public key), its `iss`
//! and `aud` match, and `exp`/`nbf` hold within the allowed clock skew. A configured claim
//! names the Bastion user; another may list groups.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use crate::AuthError;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    /// The claim holding the Bastion user name (`sub`, `email`, `preferred_username`...).
    pub user_claim: String,
    /// The claim holding a list of group names, if any.
    pub groups_claim: Option<String>,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

pub struct OidcVerifier {
    settings: OidcSettings,
    keys: Vec<Key>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("settings", &self.settings)
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    if let Some(alg) = jwk.common.key_algorithm {
        let name = format!("{alg:?}");
        return name
            .parse()
            .ok()
            .filter(|a: &Algorithm| a.family() != AlgorithmFamily::Hmac);
    }
    // No `alg` member: the key type decides (RFC 7517 §4.4 makes `alg` optional).
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        _ => None,
    }
}

impl OidcVerifier {
    /// Builds a verifier from a JWKS document. Keys of unsupported or symmetric types are
    /// skipped; a document with no usable key is an error.
    pub fn new(settings: OidcSettings, jwks_json: &str) -> Result<Self, AuthError> {
        let doc: Value =
            serde_json::from_str(jwks_json).map_err(|e| AuthError::Jwks(e.to_string()))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| AuthError::Jwks("no 'keys' array".into()))?;
        let mut keys = Vec::new();
        for raw in list {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| !matches!(u, jsonwebtoken::jwk::PublicKeyUse::Signature))
            {
                continue;
            }
            let Some(algorithm) = algorithm_of(&jwk) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err(AuthError::Jwks("no usable signature key".into()));
        }
        Ok(Self { settings, keys })
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub fn verify(&self, token: &str) -> Result<OidcIdentity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("token too large"));
        }
        let header = decode_header(token).map_err(|_| AuthError::Malformed("not a JWT"))?;
        let key = match &header.kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .ok_or_else(|| AuthError::Jwt("no key in the JWKS matches the token's 'kid'".into()))?;
        if header.alg != key.algorithm {
            return Err(AuthError::Jwt(format!(
                "algorithm {:?} does not match the key's {:?}",
                header.alg, key.algorithm
            )));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.settings.leeway_secs;
        validation.validate_nbf = true;
        let data = decode::<Value>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Jwt("bad signature".into()),
                ErrorKind::InvalidAudience => AuthError::Jwt("wrong audience".into()),
                ErrorKind::InvalidIssuer => AuthError::Jwt("wrong issuer".into()),
                ErrorKind::ImmatureSignature => AuthError::Jwt("not valid yet (nbf)".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Jwt(format!("missing claim '{c}'"))
                }
                _ => AuthError::Jwt("invalid token".into()),
            }
        })?;
        let claims = data.claims;
        let user = claims
            .get(&self.settings.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && u.len() <= 256)
            .ok_or_else(|| {
                AuthError::Jwt(format!(
                    "claim '{}' is missing or not a string",
                    self.settings.user_claim
                ))
            })?
            .to_owned();
        let groups = self
            .settings
            .groups_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|g| g.len() <= 256)
                    .take(256)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(OidcIdentity { user, groups })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    use super::*;

    struct Idp {
        key: SigningKey,
        kid: String,
    }

    impl Idp {
        fn new(seed: u8, kid: &str) -> Self {
            Self {
                key: SigningKey::from_bytes(&[seed; 32]),
                kid: kid.into(),
            }
        }
        fn jwk(&self) -> Value {
            json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": self.kid,
                   "x": URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())})
        }
        fn sign(&self, claims: &Value) -> String {
            let der = self.key.to_pkcs8_der().unwrap();
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.clone());
            encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
        }
    }

    fn settings() -> OidcSettings {
        OidcSettings {
            issuer: "https://idp.example".into(),
            audience: "bastion".into(),
            user_claim: "email".into(),
            groups_claim: Some("groups".into()),
            leeway_secs: 30,
        }
    }

    fn claims(exp_offset: i64) -> Value {
        let now = get_current_timestamp() as i64;
        json!({"iss": "https://idp.example", "aud": "bastion", "exp": now + exp_offset,
               "sub": "123", "email": "ada@example.com", "groups": ["ml", "ops"]})
    }

    #[test]
    fn accepts_a_valid_token_and_maps_claims() {
        let idp = Idp::new(1, "k1");
        let v = OidcVerifier::new(settings(), &json!({"keys": [idp.jwk()]}).to_string()).unwrap();
        let id = v.verify(&idp.sign(&claims(300))).unwrap();
        assert_eq!(id.user, "ada@example.com");
        assert_eq!(id.groups, vec!["ml".to_string(), "ops".to_string()]);
    }

    #[test]
    fn refuses_expired_wrong_audience_wrong_issuer_and_foreign_keys() {
        let idp = Idp::new(1, "k1");
        let v = OidcVerifier::new(settings(), &json!({"keys": [idp.jwk()]}).to_string()).unwrap();
        assert_eq!(v.verify(&idp.sign(&claims(-120))), Err(AuthError::Expired));
        // Within the skew: still accepted.
        assert!(v.verify(&idp.sign(&claims(-10))).is_ok());
        let mut c = claims(300);
        c["aud"] = json!("someone-else");
        assert_eq!(
            v.verify(&idp.sign(&c)),
            Err(AuthError::Jwt("wrong audience".into()))
        );
        let mut c = claims(300);
        c["iss"] = json!("https://evil.example");
        assert_eq!(
            v.verify(&idp.sign(&c)),
            Err(AuthError::Jwt("wrong issuer".into()))
        );
        // Same kid, different private key: the signature does not verify.
        let forger = Idp::new(2, "k1");
        assert_eq!(
            v.verify(&forger.sign(&claims(300))),
            Err(AuthError::Jwt("bad signature".into()))
        );
        let stranger = Idp::new(3, "k9");
        assert!(v.verify(&stranger.sign(&claims(300))).is_err());
        let mut c = claims(300);
        c.as_object_mut().unwrap().remove("email");
        assert!(v.verify(&idp.sign(&c)).is_err());
    }

    #[test]
    fn refuses_malformed_unsigned_and_oversized_tokens() {
        let idp = Idp::new(1, "k1");
        let v = OidcVerifier::new(settings(), &json!({"keys": [idp.jwk()]}).to_string()).unwrap();
        assert!(matches!(v.verify("a.b.c"), Err(AuthError::Malformed(_))));
        assert!(matches!(v.verify(""), Err(AuthError::Malformed(_))));
        let body = URL_SAFE_NO_PAD.encode(claims(300).to_string());
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert!(v.verify(&none).is_err());
        let hs = format!(
            "{}.{body}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k1"}"#)
        );
        assert!(v.verify(&hs).is_err());
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            v.verify(&huge),
            Err(AuthError::Malformed("token too large"))
        );
    }

    #[test]
    fn jwks_without_usable_keys_is_refused() {
        assert!(OidcVerifier::new(settings(), "not json").is_err());
        assert!(OidcVerifier::new(settings(), r#"{"keys": []}"#).is_err());
        assert!(
            OidcVerifier::new(settings(), r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#)
                .is_err()
        );
    }
}
