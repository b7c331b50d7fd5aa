//! `bastion quickstart`: Bastion's main job on a fresh home. Writes the shipped example
//! pipeline and the breast-cancer data into `HOME/quickstart/`, runs it (ingest, validate,
//! PII scan, train a GBDT and an MLP, scan, red-team, sign, gate, deploy — unchanged steps
//! come from the cache on a second run), then starts the server with serving, gated, and
//! prints its URL, a fresh admin token and a `curl` line for a prediction.

use std::path::Path;

use anyhow::{Context, Result, bail};
use bastion_audit::Outcome as AuditOutcome;
use bastion_auth::Role;
use bastion_store::meta::{AuditContext, AuditDraft, MetaStore};
use clap::Args;
use serde_json::{Value, json};

use crate::attest::RegistryArgs;
use crate::config::{FileConfig, ServerArgs};
use crate::pipeline::run_pipeline;

const FILES: [(&str, &str); 4] = [
    (
        "pipeline.toml",
        include_str!("../../../examples/quickstart/pipeline.toml"),
    ),
    (
        "constraints.toml",
        include_str!("../../../examples/quickstart/constraints.toml"),
    ),
    (
        "production.toml",
        include_str!("../../../examples/quickstart/production.toml"),
    ),
    (
        "breast_cancer.csv",
        include_str!("../../../datasets/breast_cancer.csv"),
    ),
];
/// The model the pipeline deploys.
const SERVED: &str = "breast-cancer-gbdt";

#[derive(Args)]
pub struct QuickstartArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    #[arg(long, short, default_value_t = 5000)]
    pub port: u16,
    /// Run the pipeline and print how to reach the model, without starting the server.
    #[arg(long)]
    pub no_serve: bool,
}

pub async fn run(home: &Path, a: QuickstartArgs) -> Result<i32> {
    let dir = home.join("quickstart");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in FILES {
        let path = dir.join(name);
        // Rewritten only when different, so an unchanged example stays cached.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            crate::attest::write_whole(&path, text.as_bytes())?;
        }
    }
    println!(
        "Running the quickstart pipeline ({})",
        dir.join("pipeline.toml").display()
    );
    let registry = RegistryArgs::default();
    let outcome = run_pipeline(home, &dir.join("pipeline.toml"), false, &registry, true).await?;
    print!("{}", crate::pipeline::table(&outcome));
    if !outcome.ok {
        eprintln!("The quickstart pipeline failed; nothing is served.");
        return Ok(1);
    }

    let file = FileConfig::load(None, home)?;
    let meta = crate::open_store(home, &file, &registry.store).await?;
    let token = admin_token(&meta).await?;
    let request = dir.join("request.json");
    crate::attest::write_whole(
        &request,
        serde_json::to_vec_pretty(&first_row()?)?.as_slice(),
    )?;
    let url = format!("http://{}:{}", a.host, a.port);
    println!();
    println!("Bastion is serving {SERVED} (alias production, gate passed) at {url}");
    println!("An admin API token, shown once: {token}");
    println!("Predict:");
    println!(
        "  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n    -d @{} {url}/v2/models/{SERVED}/infer",
        request.display()
    );
    println!("MLflow client: MLFLOW_TRACKING_URI={url} MLFLOW_TRACKING_TOKEN={token}");
    println!(
        "Dashboard: {url}/ (sign in with a user's password; make one with `bastion user create NAME --role admin --password-stdin`)"
    );
    if a.no_serve {
        return Ok(0);
    }
    let args = ServerArgs {
        host: Some(a.host),
        port: Some(a.port),
        serve_requires_gate: Some(true),
        ..ServerArgs::default()
    };
    crate::server::run(home, file, args, &[format!("{SERVED}@production")]).await?;
    Ok(0)
}

/// A new token for `admin`, created (as the first start of a server would) if the home has
/// no users yet.
async fn admin_token(meta: &MetaStore) -> Result<String> {
    let audited = meta.audited(AuditContext::new(AuditDraft {
        actor: "system:quickstart".into(),
        action: "tokens.issue".into(),
        resource: "user:admin".into(),
        request_id: String::new(),
        outcome: AuditOutcome::Success,
        body_sha256: None,
    }));
    if meta.count_users().await? == 0 {
        audited.create_user("admin", Role::Admin, None).await?;
    }
    let (secret, _) = audited
        .issue_token("admin", "quickstart token", None)
        .await
        .context("issuing the quickstart token (does the home have a user called admin?)")?;
    Ok(secret)
}

/// The first row of the shipped data as an Open Inference Protocol request.
fn first_row() -> Result<Value> {
    let text = FILES[3].1;
    let mut lines = text.lines();
    let (Some(header), Some(row)) = (lines.next(), lines.next()) else {
        bail!("the shipped data has no rows");
    };
    let inputs: Vec<Value> = header
        .split(',')
        .zip(row.split(','))
        .filter(|(name, _)| *name != "diagnosis")
        .map(|(name, value)| {
            let v: f64 = value.parse().unwrap_or(f64::NAN);
            json!({"name": name, "shape": [1], "datatype": "FP64", "data": [v]})
        })
        .collect();
    Ok(json!({"inputs": inputs}))
}
