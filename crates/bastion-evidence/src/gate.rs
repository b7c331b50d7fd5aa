//! Gate decisions: the facts a policy is evaluated against, gathered from the evidence on a
//! model version (its scans, signature, provenance, training run, red-team campaign and the
//! checks on the datasets its signed provenance names), and the decision itself, recorded
//! as `gate` evidence holding an in-toto statement on the version's root digest signed with
//! the server key. Promotion to production asks [`clearance`] whether the newest decision on
//! that exact digest passed.

use bastion_attest::provenance::Provenance;
use bastion_attest::statement::{Statement, Subject};
use bastion_attest::verify::Trust;
use bastion_core::Digest;
use bastion_policy::{Decision, Facts, Value};
use bastion_store::meta::{Evidence, EvidenceDraft};
use bastion_store::{BlobStore, MetaStore};
use serde_json::json;

use crate::attest::{latest, verified_statement};
use crate::datasets::{DATA_PII, DATA_POISON, DATA_VALIDATION};
use crate::{Attestor, EvidenceError, PROVENANCE, Scans};

/// The evidence kind of a gate decision.
pub const GATE: &str = "gate";
/// The evidence kind of a red-team campaign (its `metrics` are the `redteam.*`,
/// `privacy.*`, `poisoning.*` and `defence.*` facts).
pub const REDTEAM: &str = "redteam";
/// The in-toto predicate type of a gate decision.
pub const GATE_PREDICATE: &str = "https://bastion.invalid/gate-decision/v1";
const TOOL: &str = concat!("bastion-gate/", env!("CARGO_PKG_VERSION"));

/// The facts about one registered version, and the root digest they are about.
#[derive(Debug, Clone)]
pub struct VersionFacts {
    pub root: Digest,
    pub facts: Facts,
    /// The datasets (`sha256` hex) the signed provenance names.
    pub datasets: Vec<String>,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// Gathers every fact the evidence gives about `name`/`version`. Checks that can run now
/// (scanning unscanned files, rehashing against the signature) run as `actor`.
pub async fn version_facts(
    meta: &MetaStore,
    blobs: &dyn BlobStore,
    scans: &Scans,
    attestor: &Attestor,
    name: &str,
    version: &str,
    actor: &str,
) -> Result<VersionFacts, EvidenceError> {
    let root = meta
        .model_version_root_digest(name, version)
        .await?
        .ok_or_else(|| {
            EvidenceError::Unavailable(
                format!("{name}/{version}"),
                "no root digest is recorded (its files are not stored by this server, or it was registered before signing); a gate decides on a digest".into(),
            )
        })?;
    let mut facts = Facts::new();

    let files = scans
        .check_model_version(meta, blobs, name, version, actor)
        .await?;
    if let Some(worst) = files.max_severity() {
        facts.insert("model.scan.max_severity".into(), text(worst));
        let findings: usize = files
            .files
            .iter()
            .filter_map(|f| f.scan.as_ref())
            .map(|s| s.body["findings"].as_array().map_or(0, Vec::len))
            .sum();
        facts.insert("model.scan.findings".into(), Value::Number(findings as f64));
    }

    let verification = attestor
        .verify_model_version(meta, blobs, name, version, actor)
        .await?;
    let signature = if verification.signature.ok && verification.mismatches.is_empty() {
        "valid"
    } else if latest(meta, &root, crate::SIGNATURE).await?.is_none() {
        "missing"
    } else {
        "invalid"
    };
    facts.insert("model.signature".into(), text(signature));
    facts.insert(
        "model.quarantined".into(),
        Value::Bool(verification.quarantine.is_some()),
    );
    facts.insert(
        "provenance.valid".into(),
        Value::Bool(verification.provenance.ok),
    );

    // The training run's metrics, as last logged.
    let mv = meta.get_model_version(name, version).await?;
    if !mv.run_id.is_empty()
        && let Ok(run) = meta.get_run(&mv.run_id).await
    {
        for m in &run.data.metrics {
            if m.value.0.is_finite() {
                facts.insert(format!("model.metrics.{}", m.key), Value::Number(m.value.0));
            }
        }
    }

    // The newest red-team campaign on this digest.
    if let Some(e) = latest(meta, &root, REDTEAM).await?
        && let Some(metrics) = e.body["metrics"].as_object()
    {
        for (k, v) in metrics {
            if let Some(n) = v.as_f64() {
                facts.insert(k.clone(), Value::Number(n));
            }
        }
    }

    // Datasets: only those the verified provenance names count.
    let datasets = if verification.provenance.ok {
        provenance_datasets(meta, &root, attestor).await?
    } else {
        Vec::new()
    };
    facts.insert("dataset.count".into(), Value::Number(datasets.len() as f64));
    dataset_facts(meta, &datasets, &mut facts).await?;
    Ok(VersionFacts {
        root,
        facts,
        datasets,
    })
}

async fn provenance_datasets(
    meta: &MetaStore,
    root: &Digest,
    attestor: &Attestor,
) -> Result<Vec<String>, EvidenceError> {
    let Some(e) = latest(meta, root, PROVENANCE).await? else {
        return Ok(Vec::new());
    };
    let Ok(statement) = verified_statement(&e, &Trust::Key(attestor.public_key())) else {
        return Ok(Vec::new());
    };
    let Ok(p) = Provenance::from_statement(&statement) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = p
        .build_definition
        .resolved_dependencies
        .iter()
        .filter(|d| {
            d.annotations
                .as_ref()
                .is_some_and(|a| a["kind"] == "dataset")
        })
        .filter_map(|d| d.digest.get("sha256").cloned())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// `dataset.validation`, `dataset.pii.columns`, `dataset.poison` and
/// `provenance.dataset_validated` over the training datasets. A fact is given only when
/// every dataset has the check; one failing dataset fails it.
async fn dataset_facts(
    meta: &MetaStore,
    datasets: &[String],
    facts: &mut Facts,
) -> Result<(), EvidenceError> {
    let mut validation: Vec<Option<String>> = Vec::new();
    let mut pii: Vec<Option<f64>> = Vec::new();
    let mut poison: Vec<Option<String>> = Vec::new();
    for hex in datasets {
        let Ok(digest) = hex.parse::<Digest>() else {
            continue;
        };
        let evidence = meta.evidence_for(&digest).await?;
        let newest = |kind: &str| evidence.iter().find(|e| e.kind == kind);
        validation.push(newest(DATA_VALIDATION).map(|e| e.verdict.clone()));
        pii.push(newest(DATA_PII).and_then(|e| e.body["result"]["pii_columns"].as_f64()));
        poison.push(newest(DATA_POISON).map(|e| e.verdict.clone()));
    }
    let all_pass =
        !validation.is_empty() && validation.iter().all(|v| v.as_deref() == Some("pass"));
    facts.insert("provenance.dataset_validated".into(), Value::Bool(all_pass));
    if validation.iter().any(|v| v.as_deref() == Some("fail")) {
        facts.insert("dataset.validation".into(), text("fail"));
    } else if all_pass {
        facts.insert("dataset.validation".into(), text("pass"));
    }
    if !pii.is_empty() && pii.iter().all(Option::is_some) {
        facts.insert(
            "dataset.pii.columns".into(),
            Value::Number(pii.iter().flatten().sum()),
        );
    }
    if poison.iter().any(|v| v.as_deref() == Some("findings")) {
        facts.insert("dataset.poison".into(), text("findings"));
    } else if !poison.is_empty() && poison.iter().all(|v| v.as_deref() == Some("clean")) {
        facts.insert("dataset.poison".into(), text("clean"));
    }
    Ok(())
}

/// The policy a decision applied.
pub struct PolicyRef<'a> {
    pub name: &'a str,
    /// SHA-256 of the policy file's bytes.
    pub digest: Digest,
}

/// Signs and records `decision` on `root` as `gate` evidence.
#[allow(clippy::too_many_arguments)]
pub async fn record_decision(
    meta: &MetaStore,
    attestor: &Attestor,
    name: &str,
    version: &str,
    root: &Digest,
    policy: &PolicyRef<'_>,
    decision: &Decision,
    actor: &str,
) -> Result<Evidence, EvidenceError> {
    let model = format!("models:/{name}/{version}");
    let statement = Statement::new(
        vec![Subject::sha256(model.clone(), root.hex())],
        GATE_PREDICATE,
        json!({
            "policy": {"name": policy.name, "digest": {"sha256": policy.digest.hex()}},
            "passed": decision.passed,
            "rules": decision.rules,
            "decidedBy": actor,
            "decidedOn": bastion_core::time::rfc3339(bastion_core::time::now_ms()),
            "evaluator": TOOL,
        }),
    );
    let bundle = attestor.sign(&statement)?;
    let e = meta
        .record_evidence(&EvidenceDraft {
            digest: *root,
            kind: GATE.to_owned(),
            tool: TOOL.to_owned(),
            verdict: if decision.passed { "pass" } else { "fail" }.to_owned(),
            worst: None,
            body: json!({
                "model": name,
                "version": version,
                "policy": policy.name,
                "policy_digest": policy.digest.hex(),
                "passed": decision.passed,
                "errors": decision.errors,
                "warnings": decision.warnings,
                "bundle": serde_json::to_value(&bundle).unwrap_or_default(),
            }),
            created_by: actor.to_owned(),
        })
        .await?;
    tracing::info!(model = name, version, root = %root, policy = policy.name, passed = decision.passed, "gate decision recorded");
    Ok(e)
}

/// Whether a version may be promoted: the newest gate decision on its exact root digest
/// verifies against the server key, names that digest, passed, and (when `required` names
/// a policy by its SHA-256) applied that policy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Clearance {
    pub ok: bool,
    pub detail: String,
    /// The decision's evidence id and policy, when there is one.
    pub decision: Option<i64>,
    pub policy: Option<String>,
}

pub async fn clearance(
    meta: &MetaStore,
    attestor: &Attestor,
    name: &str,
    version: &str,
    required: Option<&Digest>,
) -> Result<Clearance, EvidenceError> {
    let refuse = |detail: String, decision: Option<&Evidence>| Clearance {
        ok: false,
        detail,
        decision: decision.map(|e| e.id),
        policy: decision.and_then(|e| e.body["policy"].as_str().map(str::to_owned)),
    };
    let Some(root) = meta.model_version_root_digest(name, version).await? else {
        return Ok(refuse(
            format!(
                "model version {name}/{version} has no recorded root digest, so no gate decision can name it"
            ),
            None,
        ));
    };
    let Some(e) = latest(meta, &root, GATE).await? else {
        return Ok(refuse(
            format!(
                "no gate decision is recorded for {root} (run `bastion gate models:/{name}/{version} --policy …`)"
            ),
            None,
        ));
    };
    let statement = match verified_statement(&e, &Trust::Key(attestor.public_key())) {
        Ok(s) => s,
        Err(why) => {
            return Ok(refuse(
                format!("the newest gate decision does not verify: {why}"),
                Some(&e),
            ));
        }
    };
    let names_root = statement.predicate_type == GATE_PREDICATE
        && statement
            .subject
            .iter()
            .any(|s| s.digest.get("sha256").is_some_and(|d| *d == root.hex()));
    if !names_root {
        return Ok(refuse(
            format!("the newest gate decision is not about {root}"),
            Some(&e),
        ));
    }
    let policy = e.body["policy"].as_str().unwrap_or("?").to_owned();
    if let Some(required) = required {
        let applied = statement.predicate["policy"]["digest"]["sha256"].as_str();
        if applied != Some(required.hex().as_str()) {
            return Ok(refuse(
                format!(
                    "the newest gate decision on {root} applied policy '{policy}' (sha256 {}), not the required policy (sha256 {})",
                    applied.unwrap_or("unknown"),
                    required.hex()
                ),
                Some(&e),
            ));
        }
    }
    if statement.predicate["passed"] != json!(true) {
        return Ok(refuse(
            format!(
                "the newest gate decision on {root} (policy '{policy}', evidence {}) failed",
                e.id
            ),
            Some(&e),
        ));
    }
    Ok(Clearance {
        ok: true,
        detail: format!(
            "gate decision {} (policy '{policy}') passed on {root}",
            e.id
        ),
        decision: Some(e.id),
        policy: Some(policy),
    })
}

/// What to decide: a policy on a version, recorded or not.
pub struct GateRequest<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub policy: &'a bastion_policy::Policy,
    /// SHA-256 of the policy file's bytes.
    pub policy_digest: Digest,
    /// Record the signed decision (false: a dry run).
    pub record: bool,
    pub actor: &'a str,
}

/// A decision and what it was made on.
pub struct Gated {
    pub facts: VersionFacts,
    pub decision: Decision,
    /// The recorded decision's evidence id.
    pub evidence: Option<i64>,
}

impl Gated {
    /// The decision as the CLI's `--format json` and the API answer it.
    pub fn to_json(&self, r: &GateRequest<'_>) -> serde_json::Value {
        json!({
            "model": format!("models:/{}/{}", r.name, r.version),
            "digest": self.facts.root.to_string(),
            "policy": {"name": r.policy.name, "sha256": r.policy_digest.hex()},
            "passed": self.decision.passed,
            "errors": self.decision.errors,
            "warnings": self.decision.warnings,
            "rules": self.decision.rules,
            "facts": self.facts.facts,
            "datasets": self.facts.datasets,
            "evidence": self.evidence,
        })
    }
}

/// Gathers the facts, evaluates the policy and (unless a dry run) records the decision.
pub async fn decide(
    meta: &MetaStore,
    blobs: &dyn BlobStore,
    scans: &Scans,
    attestor: &Attestor,
    r: &GateRequest<'_>,
) -> Result<Gated, EvidenceError> {
    let facts = version_facts(meta, blobs, scans, attestor, r.name, r.version, r.actor).await?;
    let decision = bastion_policy::evaluate(r.policy, &facts.facts);
    let evidence = if r.record {
        let policy = PolicyRef {
            name: &r.policy.name,
            digest: r.policy_digest,
        };
        let e = record_decision(
            meta,
            attestor,
            r.name,
            r.version,
            &facts.root,
            &policy,
            &decision,
            r.actor,
        )
        .await?;
        Some(e.id)
    } else {
        None
    };
    Ok(Gated {
        facts,
        decision,
        evidence,
    })
}

/// The rule-by-rule results of a recorded gate decision, read from its signed statement
/// (verified against the server key first: an unverifiable decision shows nothing).
pub fn decision_rules(attestor: &Attestor, e: &Evidence) -> Result<Vec<serde_json::Value>, String> {
    let statement = verified_statement(e, &Trust::Key(attestor.public_key()))?;
    Ok(statement.predicate["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}
