//! `bastion deploy`, `promote`, `rollback` and `deployments`: a registered model's route
//! table and serving settings, changed on this home's store (a running server picks the
//! change up within its re-check interval) or through a server (`--server`, at once). Every
//! change admits the version it puts into service first and is audited. Settings flags
//! change only what they name: the rest of the stored settings stays.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bastion_audit::entry::Outcome;
use bastion_evidence::{Attestor, Scans};
use bastion_serve::deployment::{
    Batching, Change, DeployRequest, Deployment, RollbackRule, ServeLimits,
};
use bastion_serve::guard::{Action, GuardSettings};
use bastion_serve::{Caller, Models, ServeConfig};
use bastion_store::MetaStore;
use bastion_store::meta::{AuditContext, AuditDraft};
use clap::Args;
use serde_json::{Value, json};

use crate::data::remote::Remote;
use crate::data::{Home, Where};

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// MODEL@VERSION to put into service; MODEL alone changes only settings, pins or shadow.
    pub target: String,
    /// As a canary taking this share of unpinned traffic (e.g. 10%).
    #[arg(long, value_name = "PERCENT")]
    pub canary: Option<String>,
    /// As the shadow: mirrored traffic, answers compared and discarded.
    #[arg(long, conflicts_with_all = ["canary", "pin"])]
    pub shadow: bool,
    /// As the variant LABEL, chosen by requests with the header `x-bastion-variant: LABEL`.
    #[arg(long, value_name = "LABEL", conflicts_with = "canary")]
    pub pin: Option<String>,
    /// Remove the variant LABEL.
    #[arg(long, value_name = "LABEL")]
    pub unpin: Option<String>,
    /// Stop mirroring to the shadow version.
    #[arg(long)]
    pub clear_shadow: bool,
    /// Guard actions, e.g. `range=clip,nan=reject,category=flag,ood=reject` (actions: off,
    /// log, flag, clip (range and nan only), reject).
    #[arg(long, value_name = "GUARD=ACTION,…")]
    pub guard: Option<String>,
    /// The quantile of the training rows' own distances used as the OOD threshold.
    #[arg(long)]
    pub ood_quantile: Option<f64>,
    /// An explicit OOD distance threshold.
    #[arg(long)]
    pub ood_threshold: Option<f64>,
    /// How far beyond the training range a value may lie, as a fraction of the range.
    #[arg(long)]
    pub range_margin: Option<f64>,
    /// The dataset version guards compare with (default: the model's training dataset).
    #[arg(long, value_name = "NAME@vK")]
    pub reference_data: Option<String>,
    /// Requests per second for the model, all callers together (0: unlimited).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Requests per second for the model, per caller (0: unlimited).
    #[arg(long)]
    pub rate_per_caller: Option<u32>,
    /// Burst above the sustained rates.
    #[arg(long)]
    pub burst: Option<u32>,
    /// Requests in progress at once for the model (0: unlimited).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Micro-batch up to this many rows (1: no batching).
    #[arg(long, value_name = "ROWS")]
    pub batch: Option<usize>,
    /// How long a micro-batch waits for company, in microseconds.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 2000)]
    pub batch_wait_us: u64,
    /// Roll the canary back automatically above this error rate (e.g. 2%).
    #[arg(long, value_name = "PERCENT")]
    pub max_error_rate: Option<String>,
    /// Roll the canary back automatically above this p99 latency, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub max_p99_ms: Option<f64>,
    /// Requests a canary serves before it is judged.
    #[arg(long)]
    pub min_requests: Option<u64>,
    /// Requests a canary is judged on (the most recent).
    #[arg(long)]
    pub window: Option<u64>,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The registered model.
    pub model: String,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// One model's deployment (default: all).
    pub model: Option<String>,
    #[command(flatten)]
    pub at: Where,
}

fn percent(flag: &str, text: &str) -> Result<f64> {
    let n: f64 = text
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| anyhow!("{flag} {text}: give a percentage such as 10%"))?;
    Ok(n)
}

/// The change the flags ask for.
fn change_of(a: &DeployArgs) -> Result<(String, Change)> {
    let (model, version) = match a.target.split_once('@') {
        Some((m, v)) if !m.is_empty() && !v.is_empty() => (m.to_owned(), Some(v.to_owned())),
        Some(_) => bail!("{}: expected MODEL@VERSION", a.target),
        None => (a.target.clone(), None),
    };
    let change = match version {
        Some(version) => {
            if a.unpin.is_some() || a.clear_shadow {
                bail!("--unpin and --clear-shadow take MODEL without a version");
            }
            if let Some(p) = &a.canary {
                Change::Canary {
                    version,
                    percent: percent("--canary", p)?,
                }
            } else if a.shadow {
                Change::Shadow { version }
            } else if let Some(label) = &a.pin {
                Change::Pin {
                    label: label.clone(),
                    version,
                }
            } else {
                Change::Stable { version }
            }
        }
        None => {
            if a.canary.is_some() || a.shadow || a.pin.is_some() {
                bail!("--canary, --shadow and --pin need MODEL@VERSION");
            }
            match (&a.unpin, a.clear_shadow) {
                (Some(_), true) => bail!("give --unpin or --clear-shadow, not both"),
                (Some(label), false) => Change::Unpin {
                    label: label.clone(),
                },
                (None, true) => Change::ClearShadow,
                (None, false) => Change::Configure,
            }
        }
    };
    Ok((model, change))
}

fn nonzero(n: Option<u32>, current: Option<u32>) -> Option<u32> {
    match n {
        Some(0) => None,
        Some(n) => Some(n),
        None => current,
    }
}

/// The request: the change, and the stored settings with what the flags name replaced.
fn request_of(
    a: &DeployArgs,
    change: Change,
    current: &Deployment,
    revision: i64,
) -> Result<DeployRequest> {
    let mut r = DeployRequest::new(change);
    r.expected_revision = Some(revision);
    let mut g: GuardSettings = current.guards.clone();
    let mut guards_changed = false;
    if let Some(spec) = &a.guard {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (guard, action) = part
                .split_once('=')
                .ok_or_else(|| anyhow!("--guard {part}: expected GUARD=ACTION"))?;
            let action: Action = action
                .parse()
                .map_err(|e| anyhow!("--guard {guard}: {e}"))?;
            match guard {
                "range" => g.range = action,
                "nan" => g.nan = action,
                "category" => g.category = action,
                "ood" => g.ood = action,
                other => bail!("--guard {other}: the guards are range, nan, category and ood"),
            }
        }
        guards_changed = true;
    }
    for (value, slot) in [
        (a.ood_quantile, &mut g.ood_quantile),
        (a.range_margin, &mut g.range_margin),
    ] {
        if let Some(v) = value {
            *slot = v;
            guards_changed = true;
        }
    }
    if let Some(t) = a.ood_threshold {
        g.ood_threshold = Some(t);
        guards_changed = true;
    }
    if let Some(d) = &a.reference_data {
        g.reference = Some(d.clone());
        guards_changed = true;
    }
    if guards_changed {
        r.guards = Some(g);
    }
    if a.rate.is_some()
        || a.rate_per_caller.is_some()
        || a.burst.is_some()
        || a.concurrency.is_some()
    {
        let c = current.limits;
        r.limits = Some(ServeLimits {
            rate: nonzero(a.rate, c.rate),
            rate_per_caller: nonzero(a.rate_per_caller, c.rate_per_caller),
            burst: nonzero(a.burst, c.burst),
            concurrency: nonzero(a.concurrency, c.concurrency),
        });
    }
    if let Some(max_batch) = a.batch {
        r.batching = Some(Batching {
            max_batch,
            max_wait_us: a.batch_wait_us,
        });
    }
    if a.max_error_rate.is_some()
        || a.max_p99_ms.is_some()
        || a.min_requests.is_some()
        || a.window.is_some()
    {
        let c: RollbackRule = current.rollback;
        r.rollback = Some(RollbackRule {
            max_error_rate: match &a.max_error_rate {
                Some(p) => Some(percent("--max-error-rate", p)? / 100.0),
                None => c.max_error_rate,
            },
            max_p99_ms: a.max_p99_ms.or(c.max_p99_ms),
            min_requests: a.min_requests.unwrap_or(c.min_requests),
            window: a.window.unwrap_or(c.window),
        });
    }
    Ok(r)
}

/// This home's models, for changes made on the store, with its store and who acts.
pub(crate) async fn local_models(home: &Path, at: &Where) -> Result<(Models, MetaStore, String)> {
    let h = Home::open(home, &at.registry).await?;
    let attestor = Attestor::load_or_create(&h.home).context("loading the model-signing key")?;
    let mut config = ServeConfig::new(h.tmp.join("serve"));
    config.dataset_cipher = h.cipher.clone();
    let meta = h.meta.clone();
    let actor = h.actor.clone();
    let models = Models::new(
        h.meta,
        Arc::from(h.blobs),
        Arc::new(Scans::new(bastion_scan::Policy::builtin())),
        Arc::new(attestor),
        config,
    );
    Ok((models, meta, actor))
}

async fn apply(
    home: &Path,
    at: &Where,
    model: &str,
    build: impl FnOnce(&Deployment, i64) -> Result<DeployRequest>,
) -> Result<Value> {
    if let Some(r) = remote(at)? {
        let current = r.api(&["deployments", model], None).await?;
        let deployment: Deployment = serde_json::from_value(current["deployment"].clone())
            .context("the server's deployment")?;
        let revision = current["revision"].as_i64().unwrap_or(0);
        let request = build(&deployment, revision)?;
        return r
            .api(
                &["deployments", model],
                Some(&serde_json::to_value(&request)?),
            )
            .await;
    }
    let (models, meta, actor) = local_models(home, at).await?;
    let (deployment, revision) = models.deployment(model).await?;
    let request = build(&deployment, revision)?;
    let ctx = AuditContext::new(AuditDraft {
        actor: actor.clone(),
        action: request.change.action().into(),
        resource: format!("registered_model:{model}"),
        request_id: String::new(),
        outcome: Outcome::Success,
        body_sha256: None,
    });
    let caller = Caller {
        actor: &actor,
        request_id: "",
    };
    let (d, revision) = models
        .change(model, &request, &meta.audited(ctx), caller)
        .await
        .map_err(|e| anyhow!("{model}: {e}"))?;
    Ok(json!({ "model": model, "revision": revision, "deployment": d }))
}

pub(crate) fn remote(at: &Where) -> Result<Option<Remote>> {
    at.server
        .as_deref()
        .map(|url| Remote::new(url, crate::data::token_of(at)))
        .transpose()
}

pub async fn deploy(home: &Path, a: DeployArgs) -> Result<()> {
    let (model, change) = change_of(&a)?;
    let out = apply(home, &a.at, &model, |d, rev| request_of(&a, change, d, rev)).await?;
    crate::print_json(&out)
}

pub async fn promote(home: &Path, a: ModelArgs) -> Result<()> {
    let out = apply(home, &a.at, &a.model, |_, rev| {
        let mut r = DeployRequest::new(Change::Promote);
        r.expected_revision = Some(rev);
        Ok(r)
    })
    .await?;
    crate::print_json(&out)
}

pub async fn rollback(home: &Path, a: ModelArgs) -> Result<()> {
    let out = apply(home, &a.at, &a.model, |_, rev| {
        let mut r = DeployRequest::new(Change::Rollback);
        r.expected_revision = Some(rev);
        Ok(r)
    })
    .await?;
    crate::print_json(&out)
}

pub async fn list(home: &Path, a: ListArgs) -> Result<()> {
    if let Some(r) = remote(&a.at)? {
        let out = match &a.model {
            Some(m) => r.api(&["deployments", m], None).await?,
            None => r.api(&["deployments"], None).await?,
        };
        return crate::print_json(&out);
    }
    let h = Home::open(home, &a.at.registry).await?;
    let all = h.meta.list_deployments().await?;
    let shown: Vec<Value> = all
        .into_iter()
        .filter(|d| a.model.as_ref().is_none_or(|m| *m == d.model_name))
        .map(|d| {
            json!({
                "model": d.model_name,
                "revision": d.revision,
                "deployment": d.body,
                "updated_by": d.updated_by,
                "updated_time": d.updated_time,
            })
        })
        .collect();
    crate::print_json(&json!({ "deployments": shown }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: DeployArgs,
    }

    fn args(v: &[&str]) -> DeployArgs {
        Cli::try_parse_from(std::iter::once("deploy").chain(v.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn flags_make_the_change_and_keep_unnamed_settings() {
        let (m, c) = change_of(&args(&["iris@3", "--canary", "10%"])).unwrap();
        assert_eq!(m, "iris");
        assert_eq!(
            c,
            Change::Canary {
                version: "3".into(),
                percent: 10.0
            }
        );
        assert!(change_of(&args(&["iris", "--canary", "10%"])).is_err());
        assert!(change_of(&args(&["iris@", "--shadow"])).is_err());
        let (_, c) = change_of(&args(&["iris"])).unwrap();
        assert_eq!(c, Change::Configure);

        let mut current = Deployment::default();
        current.limits.concurrency = Some(8);
        current.guards.ood = Action::Flag;
        let a = args(&[
            "iris@3",
            "--rate",
            "100",
            "--guard",
            "range=clip",
            "--max-error-rate",
            "2%",
        ]);
        let r = request_of(&a, Change::Configure, &current, 4).unwrap();
        let limits = r.limits.unwrap();
        assert_eq!((limits.rate, limits.concurrency), (Some(100), Some(8)));
        let g = r.guards.unwrap();
        assert_eq!((g.range, g.ood), (Action::Clip, Action::Flag));
        assert_eq!(r.rollback.unwrap().max_error_rate, Some(0.02));
        assert_eq!(r.expected_revision, Some(4));
        assert!(r.batching.is_none());
        assert!(
            request_of(
                &args(&["iris", "--guard", "speed=reject"]),
                Change::Configure,
                &current,
                0
            )
            .is_err()
        );
        assert!(
            request_of(
                &args(&["iris", "--guard", "range=maybe"]),
                Change::Configure,
                &current,
                0
            )
            .is_err()
        );
    }
}
