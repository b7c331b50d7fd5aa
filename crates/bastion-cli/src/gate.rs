//! `bastion gate MODEL --policy FILE`: evaluates a policy against the evidence on a
//! registered version, prints each rule with its value and verdict, records the decision as
//! a signed in-toto statement on the version's root digest (what promotion to production
//! asks for), writes JUnit XML and SARIF for CI systems, and exits 1 when the gate fails.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bastion_core::Digest;
use bastion_evidence::gate::{GateRequest, Gated, decide};
use bastion_evidence::{Attestor, Scans};
use bastion_policy::Policy;
use bastion_policy::render::{Subject, junit, sarif, table};
use clap::{Args, ValueEnum};

use crate::attest::{RegistryArgs, resolve};
use crate::data::{Home, emit};

#[derive(Clone, Copy, Default, ValueEnum)]
pub enum GateFormat {
    /// A table: each rule, its value and verdict, then the decision.
    #[default]
    Text,
    /// The decision, the facts and the recorded evidence as JSON.
    Json,
}

#[derive(Args)]
pub struct GateArgs {
    /// The registered version: models:/NAME/VERSION or models:/NAME@ALIAS.
    pub model: String,
    /// The policy file (TOML).
    #[arg(long)]
    pub policy: PathBuf,
    /// Also write the decision as JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Also write the decision as SARIF 2.1.0 here.
    #[arg(long)]
    pub sarif: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: GateFormat,
    /// Evaluate and print without recording a decision.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Reads and checks a policy file; errors name the file and the line.
pub fn read_policy(path: &Path) -> Result<(Policy, Digest)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the policy {}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".to_owned());
    let policy = Policy::parse(&text, &stem)
        .with_context(|| format!("the policy {} is not valid", path.display()))?;
    Ok((policy, Digest::of(text.as_bytes())))
}

/// Evaluates the policy at `policy_path` on `model` and records the decision unless
/// `dry_run`; returns the decision and its JSON form.
pub(crate) async fn gate(
    h: &Home,
    model: &str,
    policy_path: &Path,
    dry_run: bool,
) -> Result<(Gated, serde_json::Value)> {
    let (policy, policy_digest) = read_policy(policy_path)?;
    let reference = model.strip_prefix("models:/").unwrap_or(model);
    let (name, version) = resolve(&h.meta, reference).await?;
    let attestor = Attestor::load_or_create(&h.home).context("loading the model-signing key")?;
    let scans = Scans::new(bastion_scan::Policy::builtin());
    let request = GateRequest {
        name: &name,
        version: &version,
        policy: &policy,
        policy_digest,
        record: !dry_run,
        actor: &h.actor,
    };
    let gated = decide(&h.meta, h.blobs.as_ref(), &scans, &attestor, &request).await?;
    let mut output = gated.to_json(&request);
    output["policy"]["path"] = policy_path.display().to_string().into();
    Ok((gated, output))
}

/// Runs the command; 0 when the gate passes, 1 when it fails.
pub async fn run(home: &Path, a: GateArgs) -> Result<i32> {
    let h = Home::open(home, &a.registry).await?;
    let (gated, output) = gate(&h, &a.model, &a.policy, a.dry_run).await?;
    let model = output["model"].as_str().unwrap_or_default().to_owned();
    let digest = gated.facts.root.to_string();
    let policy_path = a.policy.display().to_string();
    let subject = Subject {
        model: &model,
        digest: &digest,
        policy_path: &policy_path,
    };
    if let Some(p) = &a.junit {
        emit(Some(p), &junit(&gated.decision, &subject))?;
    }
    if let Some(p) = &a.sarif {
        let doc = sarif(&gated.decision, &subject, env!("CARGO_PKG_VERSION"));
        emit(Some(p), &serde_json::to_string_pretty(&doc)?)?;
    }
    match a.format {
        GateFormat::Text => print!("{}", table(&gated.decision, &subject)),
        GateFormat::Json => println!("{}", serde_json::to_string_pretty(&output)?),
    }
    if !gated.decision.passed {
        let blocking: Vec<String> = gated
            .decision
            .rules
            .iter()
            .filter(|r| r.blocking())
            .map(|r| r.message())
            .collect();
        eprintln!("gate failed: {}", blocking.join("; "));
    }
    Ok(if gated.decision.passed { 0 } else { 1 })
}
