//! Deployments as the server lives them: each model's stored deployment with its limits, its
//! guard reference and its canary's health, re-read at most every `recheck` (so a change made
//! elsewhere, e.g. by the CLI on the same store, takes effect within that interval, and at
//! once on the server that made it). Changes admit the version they put into service before
//! they are stored, and are audited through the store handle they are made with. A canary
//! whose answers breach the rollback rule is rolled back here, audited as
//! `system:auto-rollback`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bastion_audit::entry::Outcome;
use bastion_ml::predictor::Table;
use bastion_store::MetaStore;
use bastion_store::meta::{AuditContext, AuditDraft, parse_dataset_reference};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::batch::Batcher;
use crate::canary::Health;
use crate::deployment::{Change, DeployRequest, Deployment, Route};
use crate::error::ServeError;
use crate::guard::Reference;
use crate::limits::ModelLimits;
use crate::models::{Caller, Models, Served};

/// A version as loaded, and the batcher feeding it.
type ServedBatcher = (Arc<Served>, Arc<Batcher>);

/// A model's deployment as served now.
pub struct Live {
    pub model: String,
    pub deployment: Deployment,
    pub revision: i64,
    pub limits: ModelLimits,
    /// The guard reference the deployment names, if it names one.
    pub reference: Option<Arc<Reference>>,
    canary_health: Mutex<Health>,
    rolling_back: AtomicBool,
    /// Micro-batchers per loaded version, when the deployment batches.
    batchers: Mutex<HashMap<String, ServedBatcher>>,
    /// Shadow copies in progress, at most `SHADOW_SLOTS`.
    shadow_slots: Arc<Semaphore>,
}

/// Shadow copies of one model's requests running at once, at most.
const SHADOW_SLOTS: usize = 64;

/// Rows a guard reference is built from, at most (larger training sets are refused for now).
const MAX_REFERENCE_ROWS: u64 = 2_000_000;

impl Models {
    /// The model's deployment, if it has one.
    pub async fn live(&self, name: &str) -> Result<Option<Arc<Live>>, ServeError> {
        if let Ok(map) = self.live.read()
            && let Some((l, at)) = map.get(name)
            && at.elapsed() < self.config.recheck
        {
            return Ok(l.clone());
        }
        let stored = self.meta.get_deployment(name).await?;
        let cached = self
            .live
            .read()
            .ok()
            .and_then(|m| m.get(name).and_then(|(l, _)| l.clone()));
        let live = match stored {
            None => None,
            Some(s) if cached.as_ref().is_some_and(|c| c.revision == s.revision) => cached,
            Some(s) => {
                let deployment: Deployment = serde_json::from_value(s.body).map_err(|e| {
                    ServeError::Load(format!(
                        "the stored deployment of '{name}' is unreadable: {e}"
                    ))
                })?;
                let reference = match &deployment.guards.reference {
                    Some(r) => Some(
                        self.reference(r, None, &self.features_of(name, &deployment).await?)
                            .await
                            .map_err(ServeError::Load)?,
                    ),
                    None => None,
                };
                Some(Arc::new(Live {
                    model: name.to_owned(),
                    limits: ModelLimits::new(&deployment.limits, &deployment.restricted),
                    deployment,
                    revision: s.revision,
                    reference,
                    canary_health: Mutex::default(),
                    rolling_back: AtomicBool::new(false),
                    batchers: Mutex::default(),
                    shadow_slots: Arc::new(Semaphore::new(SHADOW_SLOTS)),
                }))
            }
        };
        if let Ok(mut map) = self.live.write() {
            map.insert(name.to_owned(), (live.clone(), Instant::now()));
        }
        Ok(live)
    }

    /// The columns a deployment's stable version's requests become (what a reference is
    /// built over).
    async fn features_of(&self, name: &str, d: &Deployment) -> Result<Vec<String>, ServeError> {
        let Some(v) = d.stable.as_deref() else {
            return Ok(Vec::new());
        };
        let caller = Caller {
            actor: "system:deployment",
            request_id: "",
        };
        Ok(crate::models::columns_of(
            &self.get(name, v, caller).await?.plans,
        ))
    }

    /// Forgets the per-caller limiter state of callers back to a full burst (bounded memory;
    /// the server calls it periodically).
    pub fn forget_idle(&self) {
        if let Ok(map) = self.live.read() {
            for live in map.values().filter_map(|(l, _)| l.as_ref()) {
                live.limits.forget_idle();
            }
        }
    }

    /// The stored deployment and its revision (a default one at revision 0 when there is none).
    pub async fn deployment(&self, name: &str) -> Result<(Deployment, i64), ServeError> {
        match self.meta.get_deployment(name).await? {
            None => Ok((Deployment::default(), 0)),
            Some(s) => Ok((
                serde_json::from_value(s.body).map_err(|e| {
                    ServeError::Load(format!(
                        "the stored deployment of '{name}' is unreadable: {e}"
                    ))
                })?,
                s.revision,
            )),
        }
    }

    /// Applies a deploy request: the version it puts into service must exist and be admitted,
    /// a guard reference it names must load; then the deployment is stored (audited through
    /// `audited`) and takes effect on this server at once.
    pub async fn change(
        &self,
        name: &str,
        request: &DeployRequest,
        audited: &MetaStore,
        caller: Caller<'_>,
    ) -> Result<(Deployment, i64), ServeError> {
        self.meta
            .get_registered_model(name)
            .await
            .map_err(|e| crate::models::not_found(e, format!("no registered model '{name}'")))?;
        let (current, revision) = self.deployment(name).await?;
        if let Some(expected) = request.expected_revision
            && expected != revision
        {
            return Err(ServeError::Conflict(format!(
                "the deployment of '{name}' is at revision {revision}, not {expected}"
            )));
        }
        let next = request.apply(&current).map_err(ServeError::BadRequest)?;
        if let Some(v) = request.change.admits() {
            self.get(name, v, caller).await?;
        }
        if let Some(r) = &next.guards.reference
            && next.guards.reference != current.guards.reference
        {
            let features = self.features_of(name, &next).await?;
            self.reference(r, None, &features)
                .await
                .map_err(|e| ServeError::BadRequest(format!("guard reference: {e}")))?;
        }
        let body = serde_json::to_value(&next).map_err(|e| ServeError::Model(e.to_string()))?;
        let revision = audited
            .put_deployment(name, &body, revision, caller.actor)
            .await
            .map_err(|e| match e.domain() {
                Some(d) if d.code == bastion_core::ErrorCode::InvalidState => {
                    ServeError::Conflict(d.message.clone())
                }
                _ => ServeError::Store(e),
            })?;
        if let Ok(mut map) = self.live.write() {
            map.remove(name);
        }
        tracing::info!(model = name, revision, change = ?request.change, "deployment changed");
        Ok((next, revision))
    }

    /// Records a canary's answer; when the rollback rule is breached, rolls the canary back
    /// (once) in the background.
    pub fn canary_answered(self: &Arc<Self>, live: &Arc<Live>, failed: bool, latency_ms: f64) {
        let rule = live.deployment.rollback;
        if rule.max_error_rate.is_none() && rule.max_p99_ms.is_none() {
            return;
        }
        let breach = match live.canary_health.lock() {
            Ok(mut h) => h.record(failed, latency_ms, &rule),
            Err(_) => None,
        };
        let Some(reason) = breach else { return };
        if live.rolling_back.swap(true, Ordering::AcqRel) {
            return;
        }
        let models = self.clone();
        let live = live.clone();
        tokio::spawn(async move { models.auto_rollback(&live, &reason).await });
    }

    async fn auto_rollback(&self, live: &Live, reason: &str) {
        let Some(canary) = live.deployment.canary.as_ref().map(|c| c.version.clone()) else {
            return;
        };
        let name = &live.model;
        let ctx = AuditContext::new(AuditDraft {
            actor: "system:auto-rollback".into(),
            action: "deployment.auto-rollback".into(),
            resource: format!("registered_model:{name}/{canary}"),
            request_id: String::new(),
            outcome: Outcome::Success,
            body_sha256: None,
        });
        let mut request = DeployRequest::new(Change::Rollback);
        // Only the deployment this canary was judged in: a change made meanwhile wins.
        request.expected_revision = Some(live.revision);
        let caller = Caller {
            actor: "system:auto-rollback",
            request_id: "",
        };
        match self
            .change(name, &request, &self.meta.audited(ctx), caller)
            .await
        {
            Ok(_) => {
                metrics::counter!("bastion_deployment_rollbacks_total", "model" => name.clone())
                    .increment(1);
                tracing::warn!(model = %name, canary, reason, "canary rolled back automatically");
            }
            Err(e) => {
                tracing::error!(model = %name, canary, error = %e, "automatic rollback failed")
            }
        }
    }

    /// The guard reference built from a dataset version for `features`, cached.
    pub(crate) async fn reference(
        &self,
        dataset: &str,
        digest: Option<&str>,
        features: &[String],
    ) -> Result<Arc<Reference>, String> {
        let key = format!("{dataset}\u{0}{}", features.join("\u{0}"));
        if let Ok(map) = self.references.read()
            && let Some(r) = map.get(&key)
        {
            return Ok(r.clone());
        }
        let (table, source) = self.training_table(dataset, digest).await?;
        let features = features.to_vec();
        let built =
            tokio::task::spawn_blocking(move || Reference::build(&source, &table, &features))
                .await
                .map_err(|e| e.to_string())??;
        let built = Arc::new(built);
        if let Ok(mut map) = self.references.write() {
            map.insert(key, built.clone());
        }
        Ok(built)
    }
}

impl Models {
    /// A dataset version's rows (at most `MAX_REFERENCE_ROWS`) and its name, checked against
    /// the digest a model was trained on when it records one.
    pub async fn training_table(
        &self,
        dataset: &str,
        digest: Option<&str>,
    ) -> Result<(Table, String), String> {
        let (dname, version) = parse_dataset_reference(dataset).map_err(|e| e.to_string())?;
        let v = self
            .meta
            .get_dataset_version(&dname, version)
            .await
            .map_err(|e| format!("{dataset}: {e}"))?;
        if let Some(d) = digest
            && d != v.digest.hex()
        {
            return Err(format!(
                "{dataset} now has digest {}, not the {d} the model was trained on",
                v.digest.hex()
            ));
        }
        let datasets = bastion_evidence::datasets::Datasets {
            meta: &self.meta,
            blobs: self.blobs.as_ref(),
            cipher: self.config.dataset_cipher.clone(),
            tmp: self.config.staging.clone(),
        };
        let local = datasets
            .materialize(&v)
            .await
            .map_err(|e| format!("{dataset}: {e}"))?;
        let path = local.path().to_owned();
        let source = v.reference();
        tokio::task::spawn_blocking(move || {
            let table = Table::read_parquet(&path, MAX_REFERENCE_ROWS)
                .map_err(|e| format!("{source}: {e}"))?;
            drop(local);
            Ok((table, source))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

impl Live {
    /// A place for one shadow copy, if one is free.
    pub fn shadow_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.shadow_slots.clone().try_acquire_owned().ok()
    }

    /// The micro-batcher for a loaded version, when the deployment batches (a reloaded
    /// version gets a new one).
    pub fn batcher(&self, served: &Arc<Served>) -> Option<Arc<Batcher>> {
        let config = self.deployment.batching?;
        let mut map = self.batchers.lock().ok()?;
        match map.get(&served.version) {
            Some((s, b)) if Arc::ptr_eq(s, served) => Some(b.clone()),
            _ => {
                let b = Arc::new(Batcher::start(served.clone(), config));
                map.insert(served.version.clone(), (served.clone(), b.clone()));
                Some(b)
            }
        }
    }

    /// Where an unversioned request goes (see `Deployment::route`).
    pub fn route(&self, variant: Option<&str>) -> Result<Option<(String, Route)>, ServeError> {
        let draw: f64 = rand::random();
        self.deployment
            .route(variant, draw)
            .map(|r| r.map(|(v, route)| (v.to_owned(), route)))
            .map_err(ServeError::BadRequest)
    }
}
