//! The models being served. A version is loaded on first use, after admission, and kept;
//! every `recheck` interval a request re-reads whether the version was quarantined or its
//! signed root digest changed, and a changed version goes through admission again. Refusals
//! are remembered for the same interval (so a refused model costs one audit entry per
//! interval, not one per request). References by alias or stage are resolved per request
//! through a cache of the same freshness, so moving an alias switches traffic within one
//! interval, and the new target is admitted before it serves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bastion_audit::entry::Outcome;
use bastion_evidence::{Attestor, Scans};
use bastion_ml::package::{self, Limits, Manifest};
use bastion_ml::predictor::Predictor;
use bastion_store::meta::AuditDraft;
use bastion_store::{BlobStore, MetaStore, StoreError};

use crate::admission::{Admission, admit};
use crate::deployed::Live;
use crate::error::ServeError;
use crate::events::EventSink;
use crate::fetch::fetch_package;
use crate::guard::Reference;
use crate::infer::{InputPlan, plan};
use crate::policy::{OUTPUT_POLICY_TAG, OutputPolicy};
use crate::tensor::TensorLimits;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub package_limits: Limits,
    pub tensor_limits: TensorLimits,
    /// How long an admission, a refusal or an alias resolution is trusted.
    pub recheck: Duration,
    /// Where packages are copied to while they load (and reference datasets decrypted).
    pub staging: PathBuf,
    /// Decrypts dataset blobs when the home encrypts them (guard references).
    pub dataset_cipher: Option<Arc<bastion_store::crypt::DatasetCipher>>,
    /// Inference events queued for the store, at most (beyond: counted as dropped).
    pub event_queue: usize,
    /// Where inference events are published besides the store (NATS JetStream), if
    /// anywhere.
    pub publisher: Option<Arc<bastion_nats::EventPublisher>>,
    /// The share of requests whose input rows are kept in their inference event.
    pub event_sample: f64,
    /// Admit only versions with a passing gate decision on their digest. Without it a
    /// version whose newest decision failed is still refused; one never gated is admitted.
    pub require_gate: bool,
}

impl ServeConfig {
    pub fn new(staging: PathBuf) -> Self {
        Self {
            package_limits: Limits::default(),
            tensor_limits: TensorLimits::default(),
            recheck: Duration::from_secs(5),
            staging,
            dataset_cipher: None,
            event_queue: 10_000,
            publisher: None,
            event_sample: 0.1,
            require_gate: false,
        }
    }
}

/// A loaded, admitted model version.
pub struct Served {
    pub name: String,
    pub version: String,
    pub manifest: Manifest,
    pub predictor: Box<dyn Predictor>,
    pub plans: Vec<InputPlan>,
    pub admission: Admission,
    /// What its answers may reveal (the registered model's output-policy tag).
    pub policy: OutputPolicy,
    /// The training data its inputs are compared with, when it could be built.
    pub reference: Option<Arc<Reference>>,
    /// Which dataset the reference is, or why there is none.
    pub reference_note: String,
    /// How long its answers take, which decides the thread they are computed on.
    pub cost: crate::cost::AnswerCost,
}

/// A model's deployment (none: it has none) and when it was read.
pub(crate) type LiveEntry = (Option<Arc<Live>>, Instant);

#[derive(Clone)]
enum Entry {
    Ready(Arc<Served>, Instant),
    /// Why the version could not be served: remembered so that it is answered again, with
    /// the same status, without a new admission (and audit entry) per request.
    Failed(Failure, Instant),
}

#[derive(Clone)]
enum Failure {
    Refused(Vec<String>),
    Load(String),
}

impl Failure {
    fn of(e: &ServeError) -> Option<Self> {
        match e {
            ServeError::Refused { reasons, .. } => Some(Self::Refused(reasons.clone())),
            ServeError::Load(m) => Some(Self::Load(m.clone())),
            _ => None,
        }
    }

    fn error(&self, model: &str, version: &str) -> ServeError {
        match self {
            Self::Refused(reasons) => ServeError::Refused {
                model: model.to_owned(),
                version: version.to_owned(),
                reasons: reasons.clone(),
            },
            Self::Load(m) => ServeError::Load(m.clone()),
        }
    }
}

pub struct Models {
    pub(crate) meta: MetaStore,
    pub(crate) blobs: Arc<dyn BlobStore>,
    scans: Arc<Scans>,
    pub(crate) attestor: Arc<Attestor>,
    pub config: ServeConfig,
    entries: RwLock<HashMap<(String, String), Entry>>,
    resolved: RwLock<HashMap<(String, String), (String, Instant)>>,
    /// One load at a time: loads are rare, and two requests for a cold model load it once.
    loading: tokio::sync::Mutex<()>,
    /// Deployments as last read, and when.
    pub(crate) live: RwLock<HashMap<String, LiveEntry>>,
    /// Guard references by dataset and features.
    pub(crate) references: RwLock<HashMap<String, Arc<Reference>>>,
    /// Where inference events go; `None` outside a Tokio runtime.
    pub events: Option<Arc<EventSink>>,
}

/// Who asks, for the audit entries admission writes.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub actor: &'a str,
    pub request_id: &'a str,
}

fn is_missing(e: &StoreError) -> bool {
    e.domain()
        .is_some_and(|d| d.code == bastion_core::ErrorCode::ResourceDoesNotExist)
}

pub(crate) fn not_found(e: StoreError, what: String) -> ServeError {
    if is_missing(&e) {
        ServeError::NotFound(what)
    } else {
        ServeError::Store(e)
    }
}

impl Models {
    pub fn new(
        meta: MetaStore,
        blobs: Arc<dyn BlobStore>,
        scans: Arc<Scans>,
        attestor: Arc<Attestor>,
        config: ServeConfig,
    ) -> Self {
        let events = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| EventSink::start(meta.clone(), config.event_queue, config.publisher.clone()));
        Self {
            meta,
            blobs,
            scans,
            attestor,
            config,
            entries: RwLock::default(),
            resolved: RwLock::default(),
            loading: tokio::sync::Mutex::new(()),
            live: RwLock::default(),
            references: RwLock::default(),
            events,
        }
    }

    /// The version a reference names: a version number, an alias, a stage (`production`,
    /// `staging`: the latest version in it), or nothing (the `production` alias or stage if
    /// there is one, else the latest version).
    pub async fn resolve(&self, name: &str, reference: Option<&str>) -> Result<String, ServeError> {
        let reference = reference.unwrap_or("");
        if !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(reference.to_owned());
        }
        let key = (name.to_owned(), reference.to_owned());
        if let Ok(map) = self.resolved.read()
            && let Some((v, at)) = map.get(&key)
            && at.elapsed() < self.config.recheck
        {
            return Ok(v.clone());
        }
        let version = self.lookup(name, reference).await?;
        if let Ok(mut map) = self.resolved.write() {
            map.insert(key, (version.clone(), Instant::now()));
        }
        Ok(version)
    }

    async fn lookup(&self, name: &str, reference: &str) -> Result<String, ServeError> {
        let model = self
            .meta
            .get_registered_model(name)
            .await
            .map_err(|e| not_found(e, format!("no registered model '{name}'")))?;
        let alias = if reference.is_empty() {
            "production"
        } else {
            reference
        };
        match self.meta.get_model_version_by_alias(name, alias).await {
            Ok(v) => return Ok(v.version),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let latest = |stage: Option<&str>| {
            model
                .latest_versions
                .iter()
                .filter(|v| stage.is_none_or(|s| v.current_stage.eq_ignore_ascii_case(s)))
                .filter_map(|v| v.version.parse::<u64>().ok())
                .max()
        };
        let found = match latest(Some(alias)) {
            Some(v) => Some(v),
            None if reference.is_empty() => latest(None),
            None => None,
        };
        found.map(|v| v.to_string()).ok_or_else(|| {
            ServeError::NotFound(if reference.is_empty() {
                format!("model '{name}' has no versions")
            } else {
                format!("model '{name}' has no version, alias or stage '{reference}'")
            })
        })
    }

    /// The admitted, loaded version, loading it (after admission) if need be.
    pub async fn get(
        &self,
        name: &str,
        version: &str,
        caller: Caller<'_>,
    ) -> Result<Arc<Served>, ServeError> {
        let key = (name.to_owned(), version.to_owned());
        match self.cached(&key) {
            Some((Entry::Ready(s, _), true)) => return Ok(s),
            Some((Entry::Failed(f, _), true)) => return Err(f.error(name, version)),
            Some((Entry::Ready(s, _), false)) if self.unchanged(&s).await? => {
                self.insert(key, Entry::Ready(s.clone(), Instant::now()));
                return Ok(s);
            }
            _ => {}
        }
        let _one = self.loading.lock().await;
        // Another request may have loaded it, or failed to, while this one waited.
        match self.cached(&key) {
            Some((Entry::Ready(s, _), true)) => return Ok(s),
            Some((Entry::Failed(f, _), true)) => return Err(f.error(name, version)),
            _ => {}
        }
        let loaded = self.load(name, version, caller).await;
        match &loaded {
            Ok(s) => self.insert(key, Entry::Ready(s.clone(), Instant::now())),
            Err(e) => {
                if let Some(f) = Failure::of(e) {
                    self.insert(key, Entry::Failed(f, Instant::now()));
                }
            }
        }
        loaded
    }

    fn cached(&self, key: &(String, String)) -> Option<(Entry, bool)> {
        let map = self.entries.read().ok()?;
        let fresh = |at: &Instant| at.elapsed() < self.config.recheck;
        map.get(key).map(|e| {
            let at = match e {
                Entry::Ready(_, at) | Entry::Failed(_, at) => at,
            };
            (e.clone(), fresh(at))
        })
    }

    fn insert(&self, key: (String, String), e: Entry) {
        if let Ok(mut map) = self.entries.write() {
            map.insert(key, e);
        }
    }

    /// The cheap re-check of a loaded version: still not quarantined, same root digest.
    async fn unchanged(&self, s: &Served) -> Result<bool, ServeError> {
        let quarantined = self
            .meta
            .model_version_quarantine(&s.name, &s.version)
            .await?
            .is_some();
        let root = self
            .meta
            .model_version_root_digest(&s.name, &s.version)
            .await?
            .map(|d| d.hex());
        let policy = self.policy(&s.name).await?;
        Ok(!quarantined && root == s.admission.root_digest && policy.ok() == Some(s.policy))
    }

    /// The registered model's output policy (`full` when it sets none).
    async fn policy(&self, name: &str) -> Result<Result<OutputPolicy, String>, ServeError> {
        let model = self
            .meta
            .get_registered_model(name)
            .await
            .map_err(|e| not_found(e, format!("no registered model '{name}'")))?;
        Ok(model
            .tags
            .iter()
            .find(|t| t.key == OUTPUT_POLICY_TAG)
            .map_or(Ok(OutputPolicy::Full), |t| t.value.parse()))
    }

    async fn load(
        &self,
        name: &str,
        version: &str,
        caller: Caller<'_>,
    ) -> Result<Arc<Served>, ServeError> {
        self.meta
            .get_model_version(name, version)
            .await
            .map_err(|e| not_found(e, format!("model '{name}' has no version {version}")))?;
        let fetched = fetch_package(
            &self.meta,
            self.blobs.as_ref(),
            name,
            version,
            &self.config.staging,
            self.config.package_limits,
        )
        .await;
        let admission = admit(
            &self.meta,
            self.blobs.as_ref(),
            &self.scans,
            &self.attestor,
            name,
            version,
            caller.actor,
            self.config.require_gate,
        )
        .await?;
        let policy = self.policy(name).await?;
        let outcome = match (&fetched, admission.admitted()) {
            (_, true) if policy.is_err() => Err(ServeError::Refused {
                model: name.to_owned(),
                version: version.to_owned(),
                reasons: vec![format!(
                    "output policy: {}",
                    policy.clone().err().unwrap_or_default()
                )],
            }),
            (Ok(f), true) => {
                // The files copied must be the files admission just verified.
                let now = bastion_evidence::version_files(&self.meta, name, version)
                    .await?
                    .map(|l| l.files)
                    .unwrap_or_default();
                if now == f.files {
                    Ok(())
                } else {
                    Err(admission_changed(&admission))
                }
            }
            (Err(e), true) => Err(ServeError::Load(e.to_string())),
            (_, false) => Err(admission.refusal()),
        };
        let resource = format!("registered_model:{name}/{version}");
        if let Err(e) = outcome {
            return Err(self.refuse(caller, &resource, e).await);
        }
        let Ok(fetched) = fetched else {
            return Err(ServeError::Load("the package could not be copied".into()));
        };
        let dir = fetched.dir.path().to_owned();
        let limits = self.config.package_limits;
        let loaded = tokio::task::spawn_blocking(move || package::load_predictor(&dir, limits))
            .await
            .map_err(|e| ServeError::Load(e.to_string()))?;
        let (manifest, predictor) = match loaded {
            Ok(x) => x,
            Err(e) => {
                return Err(self
                    .refuse(caller, &resource, ServeError::Load(e.to_string()))
                    .await);
            }
        };
        let plans = plan(&manifest).map_err(ServeError::Load)?;
        let (reference, reference_note) = match &manifest.training.dataset {
            None => (None, "the package records no training dataset".to_owned()),
            Some(d) => match self
                .reference(
                    d,
                    manifest.training.dataset_digest.as_deref(),
                    &columns_of(&plans),
                )
                .await
            {
                Ok(r) => (Some(r), d.clone()),
                Err(e) => {
                    tracing::warn!(model = name, version, reason = %e, "serving without a guard reference");
                    (None, e)
                }
            },
        };
        self.audit(caller, "serve.admitted", &resource, Outcome::Success)
            .await;
        tracing::info!(model = name, version, "model version admitted and loaded");
        Ok(Arc::new(Served {
            name: name.to_owned(),
            version: version.to_owned(),
            manifest,
            predictor,
            plans,
            admission,
            policy: policy.unwrap_or_default(),
            reference,
            reference_note,
            cost: Default::default(),
        }))
    }

    /// Records a refusal (audit entry and log) and hands the error back.
    async fn refuse(&self, caller: Caller<'_>, resource: &str, e: ServeError) -> ServeError {
        self.audit(caller, "serve.admission-refused", resource, Outcome::Denied)
            .await;
        tracing::warn!(resource, reason = %e, "model version refused for serving");
        e
    }

    async fn audit(&self, caller: Caller<'_>, action: &str, resource: &str, outcome: Outcome) {
        let draft = AuditDraft {
            actor: caller.actor.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            request_id: caller.request_id.to_owned(),
            outcome,
            body_sha256: None,
        };
        if let Err(e) = self.meta.record_audit(&draft).await {
            tracing::error!(error = %e, action, "could not append to the audit log");
        }
    }

    /// Whether this request's input rows go into its inference event (`event_sample`).
    pub fn sample_rows(&self) -> bool {
        rand::random::<f64>() < self.config.event_sample
    }

    /// The versions loaded and admitted now.
    pub fn loaded(&self) -> Vec<(String, String)> {
        self.entries
            .read()
            .map(|m| {
                let mut v: Vec<_> = m
                    .iter()
                    .filter(|(_, e)| matches!(e, Entry::Ready(..)))
                    .map(|(k, _)| k.clone())
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default()
    }
}

/// The table columns a model's requests become (what a guard reference is built over).
pub(crate) fn columns_of(plans: &[InputPlan]) -> Vec<String> {
    plans
        .iter()
        .flat_map(|p| p.columns.iter().cloned())
        .collect()
}

fn admission_changed(a: &Admission) -> ServeError {
    ServeError::Refused {
        model: a.model.clone(),
        version: a.version.clone(),
        reasons: vec!["digests: the version's files changed while it was being admitted".into()],
    }
}
