//! The production gate: a version gets the `production` alias or the Production stage only
//! with a passing gate decision on its exact digest; refusals are audited security events;
//! a failed decision also stops the version from being served.

mod common;

use common::served::{infer, register_model, request};
use common::{Backend, TestServer, assert_error};
use serde_json::{Value, json};

backend_tests!(
    production_needs_a_passing_decision_on_the_digest,
    a_required_policy_refuses_decisions_by_other_policies
);

async fn gate(
    s: &TestServer,
    model: &str,
    policy: &str,
    dry_run: bool,
) -> (reqwest::StatusCode, Value) {
    s.call(
        reqwest::Method::POST,
        "/api/bastion/v1/model-versions/gate",
        json!({"name": model, "version": "1", "policy": policy, "policy_name": "production", "dry_run": dry_run}),
    )
    .await
}

const PASSING: &str = r#"rules = [
  'model.signature = "valid"',
  'model.scan.max_severity < "HIGH"',
  'model.quarantined = false',
  'provenance.valid = true',
]"#;

async fn production_needs_a_passing_decision_on_the_digest(b: Backend) {
    let s = TestServer::start(b).await;
    register_model(&s, "churn", &[]).await;
    let alias = json!({"name": "churn", "alias": "production", "version": "1"});
    let stage = json!({"name": "churn", "version": "1", "stage": "Production", "archive_existing_versions": false});

    // No decision yet: both routes to production are refused, other aliases are not gated.
    let (st, body) = s.post("/registered-models/alias", alias.clone()).await;
    assert_error(
        st,
        &body,
        403,
        "PERMISSION_DENIED",
        "no gate decision is recorded",
    );
    let (st, body) = s
        .post("/model-versions/transition-stage", stage.clone())
        .await;
    assert_error(
        st,
        &body,
        403,
        "PERMISSION_DENIED",
        "the Production stage needs a passing gate decision",
    );
    s.ok_post(
        "/registered-models/alias",
        json!({"name": "churn", "alias": "staging", "version": "1"}),
    )
    .await;

    // A malformed policy is a clear 400 with its line.
    let (st, body) = gate(&s, "churn", "rules = [\n  'model.auc >= 0.9',\n]", false).await;
    assert_error(st, &body, 400, "INVALID_PARAMETER_VALUE", "line 2");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown fact 'model.auc'"),
        "{body}"
    );

    // A failing decision: no metric was logged, so the AUC rule has no evidence.
    let (st, failed) = gate(
        &s,
        "churn",
        "rules = ['model.metrics.auc >= 0.95', 'model.signature = \"valid\"']",
        false,
    )
    .await;
    assert_eq!(st.as_u16(), 200, "{failed}");
    assert_eq!(failed["passed"], false);
    assert_eq!(failed["rules"][0]["verdict"], "missing");
    assert_eq!(failed["rules"][1]["verdict"], "pass");
    assert_eq!(failed["facts"]["model.signature"], "valid");
    assert_eq!(failed["facts"]["model.scan.max_severity"], "NONE");
    assert!(failed["evidence"].is_i64(), "{failed}");
    let (st, body) = s.post("/registered-models/alias", alias.clone()).await;
    assert_error(st, &body, 403, "PERMISSION_DENIED", "failed");
    // …and a version whose newest decision failed is not served.
    let (st, out) = infer(
        &s,
        "/v2/models/churn/versions/1/infer",
        request(&[(0.1, 0.2, "red")]),
    )
    .await;
    assert_eq!(st.as_u16(), 403, "{out}");
    assert!(
        out["error"].as_str().unwrap_or("").contains("gate"),
        "{out}"
    );

    // A passing decision opens production; a later dry run records nothing.
    let (st, passed) = gate(&s, "churn", PASSING, false).await;
    assert_eq!(st.as_u16(), 200, "{passed}");
    assert_eq!(passed["passed"], true, "{passed}");
    assert_eq!(passed["digest"], failed["digest"]);
    let (st, dry) = gate(&s, "churn", "rules = ['model.metrics.auc >= 0.95']", true).await;
    assert_eq!(st.as_u16(), 200);
    assert_eq!(
        (dry["passed"].clone(), dry["evidence"].clone()),
        (json!(false), Value::Null)
    );
    s.ok_post("/registered-models/alias", alias).await;
    let v = s.ok_post("/model-versions/transition-stage", stage).await;
    assert_eq!(v["model_version"]["current_stage"], "Production");
    let attestations = s
        .call(
            reqwest::Method::GET,
            "/api/bastion/v1/model-versions/evidence?name=churn&version=1",
            Value::Null,
        )
        .await;
    assert_eq!(attestations.0.as_u16(), 200);

    // The decision is a signed in-toto statement on the root digest.
    let root: bastion_core::Digest = passed["digest"]
        .as_str()
        .unwrap_or("")
        .parse()
        .expect("digest");
    let evidence = s.meta.evidence_for(&root).await.expect("evidence");
    let decision = evidence
        .iter()
        .find(|e| e.kind == "gate")
        .expect("gate evidence");
    assert_eq!(decision.verdict, "pass");
    let bundle = bastion_attest::Bundle::from_json(
        &serde_json::to_vec(&decision.body["bundle"]).unwrap_or_default(),
    )
    .expect("bundle");
    let (_, key) = s
        .call(
            reqwest::Method::GET,
            "/api/bastion/v1/signing-key",
            Value::Null,
        )
        .await;
    let key =
        bastion_attest::PublicKey::from_pem(key["public_key"].as_str().unwrap_or("")).expect("key");
    let statement =
        bastion_attest::verify::verify_bundle(&bundle, &bastion_attest::Trust::Key(key))
            .expect("verifies");
    assert_eq!(
        statement.predicate_type,
        bastion_evidence::gate::GATE_PREDICATE
    );
    assert_eq!(statement.subject[0].digest["sha256"], root.hex());
    assert_eq!(statement.predicate["passed"], true);
    assert_eq!(statement.predicate["policy"]["name"], "production");

    // Refusals and decisions are in the audit log.
    let entries = s.audit_entries().await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"security.production_gate"), "{actions:?}");
    assert!(actions.contains(&"gate.decide"), "{actions:?}");
    assert!(
        actions.contains(&"registered-models.set-alias"),
        "{actions:?}"
    );
}

async fn a_required_policy_refuses_decisions_by_other_policies(b: Backend) {
    let required = bastion_core::Digest::of(PASSING.as_bytes());
    let s = TestServer::start_with(b, |c| c.production_policy = Some(required)).await;
    register_model(&s, "pinned", &[]).await;
    let alias = json!({"name": "pinned", "alias": "production", "version": "1"});
    // A weaker policy passes, but it is not the one production requires.
    let (st, weak) = gate(&s, "pinned", "rules = ['model.quarantined = false']", false).await;
    assert_eq!(
        (st.as_u16(), weak["passed"].clone()),
        (200, json!(true)),
        "{weak}"
    );
    let (st, body) = s.post("/registered-models/alias", alias.clone()).await;
    assert_error(
        st,
        &body,
        403,
        "PERMISSION_DENIED",
        "not the required policy",
    );
    let (st, ok) = gate(&s, "pinned", PASSING, false).await;
    assert_eq!(
        (st.as_u16(), ok["passed"].clone()),
        (200, json!(true)),
        "{ok}"
    );
    assert_eq!(ok["policy"]["sha256"], required.hex());
    s.ok_post("/registered-models/alias", alias).await;
}
