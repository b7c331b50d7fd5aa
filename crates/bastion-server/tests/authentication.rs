//! Every way in, and every way of being refused: API tokens (valid, expired, revoked,
//! malformed, of a disabled user), passwords over Basic (wrong, locked out after repeated
//! failures), OIDC JWTs (valid, wrong signature, wrong audience, wrong issuer, expired,
//! unsigned), oversized headers, rate limits; secrets never echoed back.

mod common;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bastion_auth::Role;
use bastion_auth::oidc::{OidcSettings, OidcVerifier};
use bastion_core::time;
use bastion_server::{OidcConfig, RateLimit};
use common::{Backend, TestServer};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::Method;
use serde_json::{Value, json};

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
    Raw(&'a str),
}

async fn call(
    s: &TestServer,
    auth: Auth<'_>,
    method: Method,
    path: &str,
    body: Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = s.client.request(method, s.url(path));
    req = match auth {
        Auth::None => req,
        Auth::Bearer(t) => req.bearer_auth(t),
        Auth::Basic(u, p) => req.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))),
        ),
        Auth::Raw(v) => req.header("authorization", v),
    };
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

const WHOAMI: &str = "/api/bastion/v1/whoami";

async fn whoami(s: &TestServer, auth: Auth<'_>) -> (u16, Value) {
    let (st, v, _) = call(s, auth, Method::GET, WHOAMI, Value::Null).await;
    (st, v)
}

async fn tokens_expire_revoke_and_malformed_ones_are_refused(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    s.meta
        .create_user("ada", Role::DataScientist, None)
        .await
        .unwrap();
    let (token, info) = s.meta.issue_token("ada", "laptop", None).await.unwrap();

    let (st, v) = whoami(&s, Auth::Bearer(&token)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"], "ada");
    assert_eq!(v["role"], "data-scientist");
    assert_eq!(v["token_id"], info.token_id);

    // No credentials: 401 with a challenge naming both schemes.
    let (st, v, h) = call(&s, Auth::None, Method::GET, WHOAMI, Value::Null).await;
    assert_eq!(st, 401);
    assert_eq!(v["error_code"], "UNAUTHENTICATED");
    let challenge = h.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(
        challenge.contains("Bearer") && challenge.contains("Basic"),
        "{challenge}"
    );

    // Malformed credentials of every shape.
    let almost = format!("{}x", &token[..token.len() - 1]);
    let huge = format!("Bearer {}", "a".repeat(20_000));
    for (auth, why) in [
        (Auth::Raw("Bearer"), "Empty"),
        (Auth::Raw("Bearer bst_nothex_AAAA"), "malformed"),
        (Auth::Bearer(&almost), "invalid"),
        (Auth::Raw("Basic !!!not-base64"), "Malformed Basic"),
        (Auth::Raw("Basic Zm9v"), "Malformed Basic"),
        (
            Auth::Raw("Digest username=x"),
            "Unsupported authorization scheme",
        ),
        (Auth::Raw(&huge), "too large"),
    ] {
        let (st, v) = whoami(&s, auth).await;
        assert_eq!(st, 401, "{why}: {v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{why}: {v}");
        assert!(
            !v.to_string().contains(&token[10..]),
            "a secret was echoed: {v}"
        );
    }

    // Revoked through the API: refused at once, with the reason.
    let (st, v, _) = call(
        &s,
        Auth::Bearer(&token),
        Method::DELETE,
        &format!("/api/bastion/v1/tokens/{}", info.token_id),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["token"]["revoked_time"].is_i64());
    let (st, v) = whoami(&s, Auth::Bearer(&token)).await;
    assert_eq!(st, 401);
    assert!(v["message"].as_str().unwrap().contains("revoked"), "{v}");

    // Expired: a token valid for 300 ms works, then does not.
    let (short, _) = s
        .meta
        .issue_token("ada", "short", Some(time::now_ms() + 300))
        .await
        .unwrap();
    assert_eq!(whoami(&s, Auth::Bearer(&short)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (st, v) = whoami(&s, Auth::Bearer(&short)).await;
    assert_eq!(st, 401);
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");

    // A disabled user's tokens stop working.
    let (t2, _) = s.meta.issue_token("ada", "other", None).await.unwrap();
    s.meta.set_user_disabled("ada", true).await.unwrap();
    // (Disabled through the store directly, so the server's short cache is bypassed by a
    // token it has never seen.)
    let (st, v) = whoami(&s, Auth::Bearer(&t2)).await;
    assert_eq!(st, 401);
    assert!(v["message"].as_str().unwrap().contains("disabled"), "{v}");

    // A user can mint their own tokens: shown once, listed without the secret.
    s.meta.create_user("bo", Role::Viewer, None).await.unwrap();
    let (bo, _) = s.meta.issue_token("bo", "", None).await.unwrap();
    let (st, v, _) = call(
        &s,
        Auth::Bearer(&bo),
        Method::POST,
        "/api/bastion/v1/tokens",
        json!({"description": "ci", "expires_in_days": 30}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let minted = v["token"].as_str().unwrap().to_owned();
    assert!(minted.starts_with("bst_"));
    assert_eq!(whoami(&s, Auth::Bearer(&minted)).await.0, 200);
    let (_, v, _) = call(
        &s,
        Auth::Bearer(&bo),
        Method::GET,
        "/api/bastion/v1/tokens",
        Value::Null,
    )
    .await;
    assert_eq!(v["tokens"].as_array().unwrap().len(), 2);
    assert!(
        !v.to_string().contains(&minted[17..]),
        "listing leaked a secret"
    );
    // ...but cannot revoke someone else's.
    let (st, _, _) = call(
        &s,
        Auth::Bearer(&bo),
        Method::DELETE,
        &format!("/api/bastion/v1/tokens/{}", info.token_id),
        Value::Null,
    )
    .await;
    assert_eq!(st, 404);
    // Bad expiries are refused.
    let (st, _, _) = call(
        &s,
        Auth::Bearer(&bo),
        Method::POST,
        "/api/bastion/v1/tokens",
        json!({"expires_in_days": 0}),
    )
    .await;
    assert_eq!(st, 400);
}

async fn passwords_and_lockout(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    let hash = bastion_store::meta::hash_password("correct horse battery".into())
        .await
        .unwrap();
    s.meta
        .create_user("cy", Role::Viewer, Some(&hash))
        .await
        .unwrap();
    let (st, v) = whoami(&s, Auth::Basic("cy", "correct horse battery")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["method"], "basic");
    let (st, v) = whoami(&s, Auth::Basic("cy", "wrong")).await;
    assert_eq!(st, 401);
    assert!(!v.to_string().contains("wrong\""), "{v}");
    // Unknown users answer exactly like wrong passwords.
    let (st2, v2) = whoami(&s, Auth::Basic("nobody", "wrong")).await;
    assert_eq!((st2, &v2["message"]), (401, &v["message"]));

    // After repeated failures the account is locked out, even for the right password, with a
    // Retry-After telling the client when to come back.
    for _ in 0..5 {
        whoami(&s, Auth::Basic("cy", "still wrong")).await;
    }
    let (st, v, h) = call(
        &s,
        Auth::Basic("cy", "correct horse battery"),
        Method::GET,
        WHOAMI,
        Value::Null,
    )
    .await;
    assert_eq!(st, 429, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("failed authentication"),
        "{v}"
    );
    let wait: u64 = h
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);

    // Passwords shorter than the policy are refused when set.
    let admin_hash = bastion_store::meta::hash_password("admin password 1".into())
        .await
        .unwrap();
    s.meta
        .create_user("root2", Role::Admin, Some(&admin_hash))
        .await
        .unwrap();
    let (admin, _) = s.meta.issue_token("root2", "", None).await.unwrap();
    let (st, v, _) = call(
        &s,
        Auth::Bearer(&admin),
        Method::POST,
        "/api/bastion/v1/users",
        json!({"name": "dee", "role": "viewer", "password": "short"}),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("at least 12"),
        "{v}"
    );
    let (st, v, _) = call(
        &s,
        Auth::Bearer(&admin),
        Method::POST,
        "/api/bastion/v1/users",
        json!({"name": "dee", "role": "root", "password": "long enough password"}),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("unknown role"),
        "{v}"
    );
    // The audit never holds a hash of a body that carried a password.
    let entries = s.audit_entries().await;
    assert!(
        entries
            .iter()
            .filter(|e| e.action.starts_with("users."))
            .all(|e| e.body_sha256.is_none())
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "security.auth-failed" && e.actor.contains("user:cy"))
    );
    assert!(entries.iter().any(|e| e.action == "security.auth-locked"));
}

struct Idp {
    key: SigningKey,
    kid: &'static str,
}

impl Idp {
    fn jwks(&self) -> String {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": self.kid,
                         "x": URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())}]})
        .to_string()
    }
    fn sign(&self, claims: &Value) -> String {
        let der = self.key.to_pkcs8_der().unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.into());
        encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }
}

fn claims(user: &str, groups: &[&str], exp_offset: i64, aud: &str) -> Value {
    let now = get_current_timestamp() as i64;
    json!({"iss": "https://idp.test", "aud": aud, "exp": now + exp_offset, "iat": now,
           "email": user, "groups": groups})
}

async fn oidc_tokens(b: Backend) {
    let idp = Idp {
        key: SigningKey::from_bytes(&[11; 32]),
        kid: "idp-1",
    };
    let settings = OidcSettings {
        issuer: "https://idp.test".into(),
        audience: "bastion".into(),
        user_claim: "email".into(),
        groups_claim: Some("groups".into()),
        leeway_secs: 30,
    };
    let oidc = OidcConfig {
        verifier: RwLock::new(Arc::new(
            OidcVerifier::new(settings.clone(), &idp.jwks()).unwrap(),
        )),
        settings,
        group_roles: vec![("ml-team".into(), Role::DataScientist)],
        default_role: None,
    };
    let s = TestServer::start_secure(b, |_| {}, Some(oidc)).await;

    // A member of a mapped group gets that group's role.
    let (st, v) = whoami(
        &s,
        Auth::Bearer(&idp.sign(&claims("eve@corp", &["ml-team"], 300, "bastion"))),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"], "eve@corp");
    assert_eq!(v["role"], "data-scientist");
    assert_eq!(v["method"], "oidc");
    // A known user keeps their Bastion role.
    s.meta
        .create_user("fay@corp", Role::Auditor, None)
        .await
        .unwrap();
    let (_, v) = whoami(
        &s,
        Auth::Bearer(&idp.sign(&claims("fay@corp", &[], 300, "bastion"))),
    )
    .await;
    assert_eq!(v["role"], "auditor");
    // Unknown, in no mapped group, no default role: refused.
    let (st, _) = whoami(
        &s,
        Auth::Bearer(&idp.sign(&claims("gus@corp", &["sales"], 300, "bastion"))),
    )
    .await;
    assert_eq!(st, 401);

    let forger = Idp {
        key: SigningKey::from_bytes(&[12; 32]),
        kid: "idp-1",
    };
    let body = URL_SAFE_NO_PAD.encode(claims("eve@corp", &["ml-team"], 300, "bastion").to_string());
    let unsigned = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    for (token, why) in [
        (
            forger.sign(&claims("eve@corp", &["ml-team"], 300, "bastion")),
            "bad signature",
        ),
        (
            idp.sign(&claims("eve@corp", &["ml-team"], 300, "other-app")),
            "wrong audience",
        ),
        (
            idp.sign(&claims("eve@corp", &["ml-team"], -120, "bastion")),
            "expired",
        ),
        (unsigned, "not a JWT"),
    ] {
        let (st, v) = whoami(&s, Auth::Bearer(&token)).await;
        assert_eq!(st, 401, "{why}: {v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    let mut wrong_iss = claims("eve@corp", &["ml-team"], 300, "bastion");
    wrong_iss["iss"] = json!("https://evil.test");
    let (st, v) = whoami(&s, Auth::Bearer(&idp.sign(&wrong_iss))).await;
    assert_eq!(st, 401);
    assert!(
        v["message"].as_str().unwrap().contains("wrong issuer"),
        "{v}"
    );
}

async fn rate_limits_answer_429_with_retry_after(b: Backend) {
    let s = TestServer::start_secure(
        b,
        |c| {
            c.rate_limit_per_principal = Some(RateLimit {
                per_second: 1,
                burst: 3,
            })
        },
        None,
    )
    .await;
    s.meta.create_user("hal", Role::Viewer, None).await.unwrap();
    let (token, _) = s.meta.issue_token("hal", "", None).await.unwrap();
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..6 {
        let (st, _, h) = call(&s, Auth::Bearer(&token), Method::GET, WHOAMI, Value::Null).await;
        statuses.push(st);
        if st == 429 {
            retry = h.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert_eq!(retry.as_deref(), Some("1"));
    let entries = s.audit_entries().await;
    assert!(
        entries
            .iter()
            .any(|e| e.action == "security.rate-limited" && e.actor.contains("hal"))
    );
}

async fn oversized_headers_are_refused_cleanly(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    // Far beyond any header limit: the server answers (431 or 400) and keeps serving.
    let resp = s
        .client
        .get(s.url(WHOAMI))
        .header("x-filler", "a".repeat(200_000))
        .send()
        .await;
    if let Ok(r) = resp {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert_eq!(whoami(&s, Auth::None).await.0, 401);
}

backend_tests!(
    tokens_expire_revoke_and_malformed_ones_are_refused,
    passwords_and_lockout,
    oidc_tokens,
    rate_limits_answer_429_with_retry_after,
    oversized_headers_are_refused_cleanly,
);

#[tokio::test]
async fn openapi_document_lists_the_admin_api() {
    let s = TestServer::start_secure(Backend::Sqlite, |_| {}, None).await;
    let (st, v, _) = call(
        &s,
        Auth::None,
        Method::GET,
        "/api/bastion/openapi.json",
        Value::Null,
    )
    .await;
    assert_eq!(st, 200);
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    let schemes = &v["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["client_certificate"]["type"], "mutualTLS");
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/api/bastion/v1/whoami",
        "/api/bastion/v1/users",
        "/api/bastion/v1/users/{name}/tokens",
        "/api/bastion/v1/grants",
        "/api/bastion/v1/audit/entries",
        "/api/bastion/v1/audit/inclusion/{seq}",
        "/api/bastion/v1/audit/consistency",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    // Every admin route of the rule table is documented.
    for r in bastion_server::auth::policy::RULES.iter() {
        if r.path.starts_with("/api/bastion/v1/") {
            let m = r.method.as_str().to_lowercase();
            assert!(
                v["paths"][r.path][&m].is_object(),
                "{} {} undocumented",
                r.method,
                r.path
            );
        }
    }
    assert!(v["components"]["securitySchemes"]["bearer"].is_object());
}
