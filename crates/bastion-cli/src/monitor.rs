//! `bastion monitor`: the monitor worker on this home's store (the same worker `bastion
//! server --monitor-rules` runs inside the server), and `bastion incidents`: what it found,
//! listed, acknowledged and resolved on the store or through a server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bastion_audit::entry::Outcome;
use bastion_monitor::AlertRules;
use bastion_nats::{EventConsumer, NatsSettings};
use bastion_serve::Models;
use bastion_store::MetaStore;
use bastion_store::meta::{AuditContext, AuditDraft, IncidentQuery};
use bastion_watch::{Events, NatsEvents, PipelineRunner, Responder, StoreEvents, Worker};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::data::Where;

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The alert rules (TOML): `[[alert]]` tables, and optionally `[window]` and `[respond]`.
    #[arg(long)]
    pub rules: PathBuf,
    /// Workers with the same consumer name share one position in the event stream: each
    /// event is judged by one of them.
    #[arg(long, default_value = "default")]
    pub consumer: String,
    /// Judge the events there are now, carry out the responses, print a summary and stop.
    #[arg(long)]
    pub once: bool,
    /// Seconds between polls once caught up.
    #[arg(long, default_value_t = 1.0)]
    pub poll: f64,
    /// Read only events and labels at least this many milliseconds old (time for writers
    /// to commit).
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: i64,
    /// Read inference events from this NATS JetStream server (`nats://host:port`), where
    /// `bastion serve --nats` replicas publish them, instead of the store's table.
    #[arg(long, env = "BASTION_NATS_URL")]
    pub nats: Option<String>,
    /// The JetStream stream of inference events.
    #[arg(long, env = "BASTION_NATS_STREAM", default_value = "BASTION_EVENTS")]
    pub nats_stream: String,
    /// Seconds before events a worker fetched from NATS but never committed (it died) go
    /// to another worker.
    #[arg(long, default_value_t = 30.0)]
    pub nats_ack_wait: f64,
    /// Seconds a worker holds the consumer's lease without renewing it; a standby worker
    /// with the same consumer name takes over that long after the reading one dies.
    #[arg(long, default_value_t = 15.0)]
    pub lease: f64,
    /// Serve the monitor's Prometheus metrics (`/metrics`: drift, detector and incident
    /// figures) at this address, e.g. 127.0.0.1:9464.
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// Incidents newest first (JSON).
    List {
        /// open, acknowledged or resolved.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        at: Where,
    },
    /// One incident with the responses carried out for it.
    Show {
        id: i64,
        #[command(flatten)]
        at: Where,
    },
    /// Mark an open incident as being handled.
    Ack {
        id: i64,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        at: Where,
    },
    /// Close an incident; a later alert with its key opens a new one.
    Resolve {
        id: i64,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        at: Where,
    },
}

pub fn read_rules(path: &Path) -> Result<AlertRules> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the alert rules {}", path.display()))?;
    AlertRules::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Re-runs a pipeline file with this binary, on the same home.
struct RunWithThisBinary {
    home: PathBuf,
}

impl PipelineRunner for RunWithThisBinary {
    fn run<'a>(
        &'a self,
        pipeline: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
    {
        Box::pin(async move {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let out = tokio::process::Command::new(exe)
                .arg("--home")
                .arg(&self.home)
                .args(["run", pipeline, "--json"])
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("starting the pipeline: {e}"))?;
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let summary = report.get("steps").map_or_else(
                || {
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                        .to_owned()
                },
                |s| format!("{} step(s)", s.as_array().map_or(0, Vec::len)),
            );
            if out.status.success() {
                Ok(summary)
            } else {
                Err(format!("the pipeline failed ({}): {summary}", out.status))
            }
        })
    }
}

/// How long a worker holds a consumer's lease by default.
pub const LEASE: Duration = Duration::from_secs(15);

/// A name for this worker, unique among all workers of a consumer group.
pub fn lease_holder() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!(
        "{}/{}/{}",
        host.trim(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Where `consumer` reads events: the NATS stream when there is one (joining the group's
/// durable consumer from its committed position), else the store's table.
pub async fn event_source(
    meta: &MetaStore,
    nats: Option<&NatsSettings>,
    consumer: &str,
    settle_ms: i64,
) -> Result<Events> {
    let Some(n) = nats else {
        return Ok(Events::Store(StoreEvents::new(meta.clone(), settle_ms)));
    };
    let after = meta
        .monitor_cursor(consumer)
        .await?
        .map_or(0, |c| u64::try_from(c.after_id).unwrap_or(0));
    let joined = EventConsumer::join(n, consumer, after)
        .await
        .with_context(|| format!("joining consumer group '{consumer}' on {}", n.url))?;
    Ok(Events::Nats(Box::new(NatsEvents { consumer: joined })))
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s < 1e9) {
        bail!("{flag} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

/// A responder that can re-run pipelines on `home`.
pub fn responder(
    home: &Path,
    meta: MetaStore,
    models: Arc<Models>,
    rules: &AlertRules,
) -> Responder {
    Responder::new(meta, models, rules.respond.clone()).with_pipeline_runner(Arc::new(
        RunWithThisBinary {
            home: home.to_owned(),
        },
    ))
}

pub async fn monitor(home: &Path, a: MonitorArgs) -> Result<()> {
    if a.at.server.is_some() {
        bail!("bastion monitor works on a store (--backend-store-uri), not through --server");
    }
    let poll = seconds("--poll", a.poll)?;
    let lease = seconds("--lease", a.lease)?;
    let nats = match &a.nats {
        Some(url) => Some(NatsSettings {
            stream: a.nats_stream.clone(),
            ack_wait: seconds("--nats-ack-wait", a.nats_ack_wait)?,
            ..NatsSettings::new(url)
        }),
        None => None,
    };
    let rules = read_rules(&a.rules)?;
    let (models, meta, _) = crate::deploy::local_models(home, &a.at).await?;
    let models = Arc::new(models);
    let source = event_source(&meta, nats.as_ref(), &a.consumer, a.settle_ms).await?;
    let respond = responder(home, meta.clone(), models.clone(), &rules);
    let mut worker = Worker::start(meta, models, source, &a.consumer, rules, respond)
        .await
        .context("starting the monitor")?
        .with_label_settle(a.settle_ms)
        .with_lease(&lease_holder(), lease);
    if a.once {
        const COUNTS: [&str; 6] = [
            "events",
            "windows",
            "labels",
            "performance_windows",
            "alerts",
            "responses",
        ];
        if !worker.acquire_lease(bastion_core::time::now_ms()).await? {
            bail!(
                "another worker of consumer '{}' is reading now (it holds the lease)",
                a.consumer
            );
        }
        let mut total = json!({});
        loop {
            let step = worker.step(bastion_core::time::now_ms()).await?;
            let figures = serde_json::to_value(&step)?;
            for k in COUNTS {
                let n = total[k].as_u64().unwrap_or(0);
                total[k] = json!(n + figures[k].as_u64().unwrap_or(0));
            }
            let batch = bastion_watch::worker::BATCH;
            if step.events < batch && step.labels < batch && !step.reloaded {
                break;
            }
        }
        total["position"] = json!(worker.position());
        total["buffered"] = json!(worker.buffered());
        worker.stop().await;
        return crate::print_json(&total);
    }
    if let Some(addr) = a.metrics {
        // Installed before the first step, so no figure is missed.
        bastion_server::prometheus();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} for --metrics"))?;
        tracing::info!(address = %listener.local_addr()?, "monitor metrics at /metrics");
        tokio::spawn(async move {
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            if let Err(e) = bastion_server::serve_metrics(listener, stop).await {
                tracing::error!(error = %e, "serving the monitor's metrics");
            }
        });
    }
    tracing::info!(consumer = %a.consumer, position = worker.position(), "monitor started");
    worker
        .run(poll, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    tracing::info!("monitor stopped");
    Ok(())
}

pub async fn incidents(home: &Path, c: IncidentsCommand) -> Result<()> {
    let at = match &c {
        IncidentsCommand::List { at, .. }
        | IncidentsCommand::Show { at, .. }
        | IncidentsCommand::Ack { at, .. }
        | IncidentsCommand::Resolve { at, .. } => at,
    };
    if let Some(r) = crate::deploy::remote(at)? {
        let out = match &c {
            IncidentsCommand::List {
                status,
                model,
                limit,
                ..
            } => {
                let mut query = vec![("max_results", limit.to_string())];
                query.extend(status.clone().map(|s| ("status", s)));
                query.extend(model.clone().map(|m| ("model", m)));
                r.api_query(&["incidents"], &query).await?
            }
            IncidentsCommand::Show { id, .. } => {
                let model = remote_model(&r, *id).await?;
                r.api(&["deployments", &model, "incidents", &id.to_string()], None)
                    .await?
            }
            IncidentsCommand::Ack { id, note, .. } | IncidentsCommand::Resolve { id, note, .. } => {
                let verb = if matches!(c, IncidentsCommand::Ack { .. }) {
                    "acknowledge"
                } else {
                    "resolve"
                };
                let model = remote_model(&r, *id).await?;
                r.api(
                    &["deployments", &model, "incidents", &id.to_string(), verb],
                    Some(&json!({ "note": note })),
                )
                .await?
            }
        };
        return crate::print_json(&out);
    }
    let h = crate::data::Home::open(home, &at.registry).await?;
    let out = match c {
        IncidentsCommand::List {
            status,
            model,
            limit,
            ..
        } => {
            let q = IncidentQuery {
                status,
                model_name: model,
                before_id: None,
                limit,
            };
            json!({ "incidents": h.meta.list_incidents(&q).await? })
        }
        IncidentsCommand::Show { id, .. } => {
            let (incident, responses) = h.meta.get_incident(id).await?;
            json!({ "incident": incident, "responses": responses })
        }
        IncidentsCommand::Ack { id, note, .. } => {
            set_status(&h.meta, &h.actor, id, "acknowledged", &note).await?
        }
        IncidentsCommand::Resolve { id, note, .. } => {
            set_status(&h.meta, &h.actor, id, "resolved", &note).await?
        }
    };
    crate::print_json(&out)
}

async fn set_status(
    meta: &MetaStore,
    actor: &str,
    id: i64,
    status: &str,
    note: &str,
) -> Result<Value> {
    let (incident, _) = meta.get_incident(id).await?;
    let action = if status == "resolved" {
        "incidents.resolve"
    } else {
        "incidents.acknowledge"
    };
    let audited = meta.audited(AuditContext::new(AuditDraft {
        actor: actor.to_owned(),
        action: action.into(),
        resource: format!("registered_model:{}", incident.model_name),
        request_id: format!("incident:{id}"),
        outcome: Outcome::Success,
        body_sha256: None,
    }));
    let changed = audited.set_incident_status(id, status, actor, note).await?;
    Ok(json!({ "incident": changed }))
}

/// The model an incident belongs to, as the server lists it (incidents are addressed under
/// their model).
async fn remote_model(r: &crate::data::remote::Remote, id: i64) -> Result<String> {
    let query = [
        ("before_id", (id + 1).to_string()),
        ("max_results", "1".to_owned()),
    ];
    let all = r.api_query(&["incidents"], &query).await?;
    all["incidents"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["id"] == json!(id)))
        .and_then(|i| i["model_name"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no incident {id} of a model you may read"))
}
