//! One monitor consumer: its position in the event stream, its windows and alert state, and
//! the loop that moves them forward. A step reads a batch of events, closes the windows they
//! complete, judges each window, and commits the new position, the state and the alerts
//! together. If another worker with the same consumer name committed first, the step is
//! thrown away and the worker reloads from the store, so two workers never both judge the
//! same events and a restarted worker goes on exactly where the last commit left off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bastion_core::ErrorCode;
use bastion_monitor::performance::{Labelled, PerformanceReport, measure};
use bastion_monitor::signals::window_drift_options;
use bastion_monitor::{
    Alert, AlertRules, Alerter, Cell, DetectorSettings, Detectors, Reference, Scale, Window,
    WindowReport, WindowSpec, Windower, alert::Subject, evaluate,
};
use bastion_serve::Models;
use bastion_store::MetaStore;
use bastion_store::meta::{AlertDraft, LabelledEvent, WindowRecord};
use serde::Serialize;
use serde_json::json;

use crate::error::{WatchError, WatchResult};
use crate::references::References;
use crate::respond::Responder;
use crate::source::{EventSource, STORE_SOURCE};
use crate::state::{SavingLabelled, SavingState, SavingWindows, WorkerState};

/// Events read per step, at most.
pub const BATCH: usize = 5_000;

/// Labels younger than this are left for the next step: on PostgreSQL a label with a lower
/// id can become visible after one with a higher id (as events can).
pub const LABEL_SETTLE_MS: i64 = 2_000;

/// What one step did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Step {
    pub events: usize,
    pub windows: usize,
    pub alerts: usize,
    pub responses: usize,
    /// Labels read, and performance windows they closed.
    pub labels: usize,
    pub performance_windows: usize,
    /// Served versions whose files were hashed again in this step.
    pub integrity_checked: usize,
    /// The position committed after the step.
    pub position: i64,
    /// Whether another worker had moved on, so this one reloaded.
    pub reloaded: bool,
}

pub struct Worker<S> {
    meta: MetaStore,
    source: S,
    consumer: String,
    rules: AlertRules,
    alerter: Alerter,
    windows: BTreeMap<(String, String), Windower>,
    /// Labelled rows of each version's unfinished performance window.
    labelled: BTreeMap<(String, String), Vec<Labelled>>,
    labels_after: i64,
    label_settle_ms: i64,
    references: References,
    models: Arc<Models>,
    /// When the served versions' files are next hashed again (0: at the first step).
    next_integrity_ms: i64,
    /// How each version's features are scaled for the extraction detector.
    /// By model, then version (looked up by `&str`, with no key built per event).
    scales: std::collections::HashMap<String, std::collections::HashMap<String, Arc<Scale>>>,
    /// Per-caller detectors. Their state (query sets) is not saved with the position: a
    /// restarted worker watches callers afresh.
    detectors: Detectors,
    /// Callers' newest detector scores, recorded for the dashboard now and then.
    caller_scores: crate::history::CallerScores,
    responder: Responder,
    /// Whether the outbox may hold responses for this worker: at start (left by an earlier
    /// worker) and after a commit that queued some. Saves a query per step otherwise.
    pending: bool,
    position: i64,
    /// The cursor's revision as this worker last read or wrote it.
    revision: i64,
    batch: usize,
    lease: Option<Lease>,
}

/// A worker that shares its consumer name with others reads only while it holds the
/// consumer's lease in the store, renewing it as it goes.
struct Lease {
    holder: String,
    ttl_ms: i64,
    /// When this worker's hold runs out (0: it does not hold it).
    until_ms: i64,
}

impl<S: EventSource> Worker<S> {
    /// A worker for `consumer`, at the position and with the state its last commit left.
    pub async fn start(
        meta: MetaStore,
        models: Arc<Models>,
        source: S,
        consumer: &str,
        rules: AlertRules,
        responder: Responder,
    ) -> WatchResult<Self> {
        let mut w = Self {
            meta,
            source,
            consumer: consumer.to_owned(),
            alerter: Alerter::new(rules.clone()),
            rules,
            windows: BTreeMap::new(),
            labelled: BTreeMap::new(),
            labels_after: 0,
            label_settle_ms: LABEL_SETTLE_MS,
            references: References::new(models.clone()),
            models,
            next_integrity_ms: 0,
            caller_scores: Default::default(),
            scales: std::collections::HashMap::new(),
            detectors: Detectors::new(DetectorSettings::default()),
            responder,
            pending: true,
            position: 0,
            revision: 0,
            batch: BATCH,
            lease: None,
        };
        w.reload().await?;
        Ok(w)
    }

    /// Reads at most `n` events per step (tests, benchmarks).
    pub fn with_batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// Reads labels as soon as they are kept (tests on SQLite, where ids commit in order).
    pub fn with_label_settle(mut self, ms: i64) -> Self {
        self.label_settle_ms = ms.max(0);
        self
    }

    /// In `run`, read only while holding the consumer's lease, taken for `ttl` at a time
    /// and renewed when a third of it is left. `holder` names this worker uniquely.
    pub fn with_lease(mut self, holder: &str, ttl: Duration) -> Self {
        self.lease = Some(Lease {
            holder: holder.to_owned(),
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1),
            until_ms: 0,
        });
        self
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    /// Observations held in open windows, over all versions.
    pub fn buffered(&self) -> usize {
        self.windows.values().map(Windower::buffered).sum()
    }

    async fn reload(&mut self) -> WatchResult<()> {
        self.alerter = Alerter::new(self.rules.clone());
        self.windows.clear();
        self.labelled.clear();
        self.position = 0;
        self.revision = 0;
        self.labels_after = 0;
        self.source.release().await;
        let Some(cursor) = self.meta.monitor_cursor(&self.consumer).await? else {
            return Ok(());
        };
        let state: WorkerState = serde_json::from_value(cursor.state)
            .map_err(|e| WatchError::State(format!("consumer '{}': {e}", self.consumer)))?;
        // A position means something only in the stream it was taken in.
        let source = self.source.describe();
        if state.source != source && !(state.source.is_empty() && source == STORE_SOURCE) {
            return Err(WatchError::State(format!(
                "consumer '{}' has a position in {} events, not {source} events: give this \
                 worker another consumer name",
                self.consumer,
                if state.source.is_empty() {
                    STORE_SOURCE
                } else {
                    &state.source
                }
            )));
        }
        self.position = cursor.after_id;
        self.revision = cursor.revision;
        self.alerter.restore(state.alerter);
        self.labels_after = state.labels_after;
        for v in state.labelled {
            self.labelled.insert((v.model, v.version), v.rows);
        }
        for v in state.windows {
            // Windows cut another way (the rules file changed) start afresh.
            if v.windower.spec() == self.rules.window {
                self.windows.insert((v.model, v.version), v.windower);
            }
        }
        Ok(())
    }

    /// One batch: read, judge, commit, respond. `now_ms` closes time windows once the
    /// stream is caught up (traffic may stop; time does not).
    pub async fn step(&mut self, now_ms: i64) -> WatchResult<Step> {
        let events = self.source.next(self.position, self.batch).await?;
        let caught_up = events.len() < self.batch;
        let from = self.position;
        let mut closed: Vec<((String, String), Window)> = Vec::new();
        let mut drafts = Vec::new();
        let mut last = from;
        let count = events.len();
        for e in events {
            last = last.max(e.id);
            let o = e.observation;
            let scale = self.scale(&e.model, &e.version).await;
            if let Some(judged) = self.detectors.observe(&e.model, scale.as_deref(), &o) {
                export_caller(&judged);
                self.caller_scores.observe(&judged);
                // A caller is watched per model, whatever version answered it.
                let subject = Subject {
                    model: judged.model.clone(),
                    version: String::new(),
                    actor: judged.actor.clone(),
                };
                for a in self
                    .alerter
                    .observe(&subject, judged.time_ms, &judged.signals)
                {
                    drafts.push(draft(&a, json!({ "alert": a, "caller": judged.signals })));
                }
            }
            // Requests refused before a version was chosen belong to no version's window.
            if e.version.is_empty() {
                continue;
            }
            let key = (e.model, e.version);
            let windower = match self.windows.get_mut(&key) {
                Some(w) => w,
                None => self
                    .windows
                    .entry(key.clone())
                    .or_insert(Windower::new(self.rules.window)?),
            };
            for w in windower.push(o) {
                closed.push((key.clone(), w));
            }
        }
        if caught_up && matches!(self.rules.window, WindowSpec::Time { .. }) {
            for (key, windower) in &mut self.windows {
                for w in windower.flush(now_ms) {
                    closed.push((key.clone(), w));
                }
            }
        }
        let mut records = Vec::with_capacity(closed.len());
        for ((model, version), window) in &closed {
            let (reference, note) = self.references.get(model, version).await;
            let none = Reference::none();
            let report = evaluate(
                reference.as_deref().unwrap_or(&none),
                window,
                &window_drift_options(),
            );
            export(model, version, &report);
            records.push(crate::history::window(model, version, &report));
            let subject = Subject::model_version(model, version);
            for a in self
                .alerter
                .observe(&subject, window.end_ms, &report.signals)
            {
                drafts.push(draft(
                    &a,
                    json!({ "alert": a, "reference": note, "window": report }),
                ));
            }
        }
        let (labels, labels_last, performance) = self.labels(&mut drafts).await?;
        let integrity_checked = if now_ms >= self.next_integrity_ms {
            self.next_integrity_ms = now_ms.saturating_add(self.rules.integrity_every_ms);
            self.integrity(now_ms, &mut drafts).await
        } else {
            0
        };
        let mut step = Step {
            events: count,
            windows: closed.len(),
            alerts: drafts.len(),
            position: from,
            labels,
            performance_windows: performance,
            integrity_checked,
            ..Step::default()
        };
        records.extend(self.caller_scores.take_due(now_ms));
        if last != from
            || !closed.is_empty()
            || !records.is_empty()
            || labels_last != self.labels_after
            || !drafts.is_empty()
        {
            match self.commit(last, labels_last, &drafts, &records).await {
                Ok(()) => step.position = last,
                Err(WatchError::Store(e))
                    if e.domain()
                        .is_some_and(|d| d.code == ErrorCode::InvalidState) =>
                {
                    tracing::info!(consumer = %self.consumer, "another worker moved on; reloading");
                    self.reload().await?;
                    step.reloaded = true;
                    step.alerts = 0;
                    step.position = self.position;
                    return Ok(step);
                }
                Err(e) => {
                    // What this step changed in memory was not saved: start again from the
                    // last commit.
                    self.reload().await?;
                    return Err(e);
                }
            }
        }
        metrics::counter!("bastion_monitor_events_total").increment(count as u64);
        metrics::counter!("bastion_monitor_windows_total").increment(closed.len() as u64);
        if drafts.iter().any(|d| !d.responses.is_empty()) {
            self.pending = true;
        }
        if self.pending {
            step.responses = self.responder.carry_out_pending().await?;
            // Another worker's responses are its own to carry out.
            self.pending = false;
        }
        Ok(step)
    }

    /// Reads the labels kept since the last step into each version's performance window,
    /// measures the windows they fill and feeds the alert rules. Returns the labels read,
    /// the feedback position they reach and the windows measured.
    async fn labels(&mut self, drafts: &mut Vec<AlertDraft>) -> WatchResult<(usize, i64, usize)> {
        let mut got = self
            .meta
            .labelled_events(self.labels_after, self.batch as i64)
            .await?;
        let cutoff = bastion_core::time::now_ms() - self.label_settle_ms;
        if let Some(young) = got.iter().position(|l| l.received_time > cutoff) {
            got.truncate(young);
        }
        let mut last = self.labels_after;
        let mut full: Vec<((String, String), Vec<Labelled>)> = Vec::new();
        for l in &got {
            last = last.max(l.feedback_id);
            let Some(row) = labelled_row(l) else {
                continue;
            };
            let key = (l.model_name.clone(), l.version.clone());
            let rows = self.labelled.entry(key.clone()).or_default();
            rows.push(row);
            if rows.len() >= self.rules.performance_window {
                full.push((key, std::mem::take(rows)));
            }
        }
        self.labelled.retain(|_, rows| !rows.is_empty());
        for ((model, version), rows) in &full {
            let classes = self.references.classes(model, version).await;
            let report = measure(rows, &classes);
            export_performance(model, version, &report);
            let subject = Subject::model_version(model, version);
            for a in self
                .alerter
                .observe(&subject, report.end_ms, &report.signals)
            {
                drafts.push(draft(&a, json!({ "alert": a, "performance": report })));
            }
        }
        Ok((got.len(), last, full.len()))
    }

    /// Hashes the files of every served version again and feeds the integrity signals;
    /// returns the versions checked. A failed check is logged, not fatal: the next one
    /// comes at the next interval.
    async fn integrity(&mut self, now_ms: i64, drafts: &mut Vec<AlertDraft>) -> usize {
        let checked = match self.models.check_integrity().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the integrity check failed");
                return 0;
            }
        };
        for c in &checked {
            let mut facts = bastion_policy::Facts::new();
            facts.insert(
                "integrity.mismatch".into(),
                bastion_policy::Value::Bool(!c.mismatches.is_empty()),
            );
            facts.insert(
                "integrity.mismatched_files".into(),
                bastion_policy::Value::Number(c.mismatches.len() as f64),
            );
            metrics::gauge!("bastion_monitor_integrity_mismatched_files",
                "model" => c.model.clone(), "version" => c.version.clone())
            .set(c.mismatches.len() as f64);
            if !c.mismatches.is_empty() {
                tracing::error!(model = %c.model, version = %c.version, mismatches = ?c.mismatches,
                    "a served version's files no longer match their signature");
            }
            let subject = Subject::model_version(&c.model, &c.version);
            for a in self.alerter.observe(&subject, now_ms, &facts) {
                drafts.push(draft(&a, json!({ "alert": a, "integrity": c })));
            }
        }
        checked.len()
    }

    /// The version's feature scaling (none without a reference, or for no version).
    async fn scale(&mut self, model: &str, version: &str) -> Option<Arc<Scale>> {
        if version.is_empty() {
            return None;
        }
        if let Some(s) = self.scales.get(model).and_then(|m| m.get(version)) {
            return Some(s.clone());
        }
        let (reference, _) = self.references.get(model, version).await;
        // A version without a reference is asked again (the references retry on their own).
        let scale = Arc::new(Scale::of(reference?.as_ref()));
        self.scales
            .entry(model.to_owned())
            .or_default()
            .insert(version.to_owned(), scale.clone());
        Some(scale)
    }

    async fn commit(
        &mut self,
        to: i64,
        labels_after: i64,
        drafts: &[AlertDraft],
        records: &[WindowRecord],
    ) -> WatchResult<()> {
        // Versions whose window is empty hold nothing worth saving.
        self.windows.retain(|_, w| w.buffered() > 0);
        let state = SavingState {
            windows: self
                .windows
                .iter()
                .map(|((model, version), windower)| SavingWindows {
                    model,
                    version,
                    windower,
                })
                .collect(),
            source: self.source.describe(),
            alerter: self.alerter.snapshot(),
            labels_after,
            labelled: self
                .labelled
                .iter()
                .map(|((model, version), rows)| SavingLabelled {
                    model,
                    version,
                    rows,
                })
                .collect(),
        };
        let state =
            serde_json::to_value(&state).map_err(|e| WatchError::State(format!("saving: {e}")))?;
        let opened = self
            .meta
            .commit_monitor(&self.consumer, self.revision, to, &state, drafts, records)
            .await?;
        self.revision += 1;
        for (incident, _) in &opened {
            metrics::counter!("bastion_monitor_alerts_total",
                "model" => incident.model_name.clone(), "rule" => incident.rule.clone(),
                "severity" => incident.severity.clone())
            .increment(1);
            tracing::warn!(incident = incident.id, rule = %incident.rule, model = %incident.model_name,
                version = %incident.version, severity = %incident.severity, "monitor alert");
        }
        self.position = to;
        self.labels_after = labels_after;
        Ok(())
    }

    /// Steps until `stop` resolves, pausing `poll` whenever the stream is caught up (or,
    /// with a lease, while another worker holds it). A failed step is logged and retried
    /// after the pause: the worker outlives a database restart. On the way out the lease
    /// is given up, so a standby worker takes over at once.
    pub async fn run(mut self, poll: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let idle = match self.acquire_lease(bastion_core::time::now_ms()).await {
                Ok(false) => true,
                Ok(true) => match self.step(bastion_core::time::now_ms()).await {
                    Ok(s) => s.events < self.batch,
                    Err(e) => {
                        tracing::error!(consumer = %self.consumer, error = %e, "monitor step failed");
                        true
                    }
                },
                Err(e) => {
                    tracing::error!(consumer = %self.consumer, error = %e, "monitor lease failed");
                    true
                }
            };
            if idle {
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(poll) => {}
                }
            }
        }
        self.stop().await;
    }

    /// Gives back what the source holds and the lease, if held, so a standby worker
    /// takes over at once.
    pub async fn stop(self) {
        self.source.release().await;
        if let Some(lease) = &self.lease
            && lease.until_ms > 0
            && let Err(e) = self
                .meta
                .release_monitor_lease(&self.consumer, &lease.holder)
                .await
        {
            tracing::warn!(consumer = %self.consumer, error = %e, "giving up the monitor lease");
        }
    }

    /// Whether this worker may read now: always without a lease; with one, when it holds
    /// it (taking it when free or expired, renewing it when a third is left). A worker that
    /// takes the lease reloads, since the holder before it moved the cursor; one that lost
    /// it gives back what its source holds.
    pub async fn acquire_lease(&mut self, now_ms: i64) -> WatchResult<bool> {
        let Some(lease) = &self.lease else {
            return Ok(true);
        };
        if lease.until_ms - now_ms > lease.ttl_ms / 3 * 2 {
            return Ok(true);
        }
        let until = now_ms.saturating_add(lease.ttl_ms);
        let held = lease.until_ms > now_ms;
        let holds = self
            .meta
            .acquire_monitor_lease(&self.consumer, &lease.holder, now_ms, until)
            .await?;
        let holder = lease.holder.clone();
        match (held, holds) {
            (_, true) => {
                if !held {
                    tracing::info!(consumer = %self.consumer, holder = %holder, "monitor lease taken");
                    self.reload().await?;
                }
                if let Some(l) = &mut self.lease {
                    l.until_ms = until;
                }
                Ok(true)
            }
            (true, false) => {
                tracing::warn!(consumer = %self.consumer, holder = %holder, "monitor lease lost to another worker");
                if let Some(l) = &mut self.lease {
                    l.until_ms = 0;
                }
                self.source.release().await;
                Ok(false)
            }
            (false, false) => Ok(false),
        }
    }
}

fn labelled_row(l: &LabelledEvent) -> Option<Labelled> {
    let row = usize::try_from(l.row_index).ok()?;
    let out = &l.outputs;
    let answer = out
        .get("labels")
        .or_else(|| out.get("values"))
        .and_then(|a| a.get(row))?;
    let probabilities = out
        .get("probabilities")
        .and_then(|p| p.get(row))
        .and_then(serde_json::Value::as_array)
        .map(|p| p.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    Some(Labelled {
        time_ms: l.time_ms,
        prediction: Cell::from_json(answer),
        probabilities,
        label: Cell::from_json(&l.label),
    })
}

/// An alert as the store keeps it, with the evidence it fired on.
fn draft(a: &Alert, evidence: serde_json::Value) -> AlertDraft {
    AlertDraft {
        key: a.key.clone(),
        rule: a.rule.clone(),
        severity: a.severity.as_str().to_owned(),
        model_name: a.subject.model.clone(),
        version: a.subject.version.clone(),
        actor: a.subject.actor.clone(),
        time_ms: a.time_ms,
        evidence,
        responses: a.respond.iter().map(|r| r.as_str().to_owned()).collect(),
    }
}

/// A caller's detector scores as histograms per model (callers are too many for labels;
/// the incidents name them).
fn export_caller(judged: &bastion_monitor::CallerSignals) {
    for (signal, metric) in [
        ("extraction.score", "bastion_monitor_extraction_score"),
        (
            "probing.boundary_rate",
            "bastion_monitor_probing_boundary_rate",
        ),
        (
            "probing.flagged_rate",
            "bastion_monitor_probing_flagged_rate",
        ),
        ("abuse.limited_rate", "bastion_monitor_abuse_limited_rate"),
        ("abuse.auth_failures", "bastion_monitor_abuse_auth_failures"),
        ("abuse.volume_ratio", "bastion_monitor_abuse_volume_ratio"),
    ] {
        if let Some(bastion_policy::Value::Number(v)) = judged.signals.get(signal) {
            metrics::histogram!(metric, "model" => judged.model.clone()).record(*v);
        }
    }
}

/// A performance window's figures as gauges, per model version.
fn export_performance(model: &str, version: &str, r: &PerformanceReport) {
    let labels = [("model", model.to_owned()), ("version", version.to_owned())];
    for (name, v) in [
        ("bastion_monitor_accuracy", r.accuracy),
        ("bastion_monitor_roc_auc", r.roc_auc),
        ("bastion_monitor_calibration_error", r.ece),
        ("bastion_monitor_mae", r.mae),
        ("bastion_monitor_rmse", r.rmse),
    ] {
        if let Some(v) = v {
            metrics::gauge!(name, &labels).set(v);
        }
    }
    metrics::counter!("bastion_monitor_labels_total", &labels).increment(r.labelled as u64);
}

/// The window's figures as Prometheus gauges, per model version.
fn export(model: &str, version: &str, r: &WindowReport) {
    let labels = [("model", model.to_owned()), ("version", version.to_owned())];
    let gauge = |name: &'static str, v: f64| metrics::gauge!(name, &labels).set(v);
    gauge("bastion_monitor_error_rate", r.error_rate);
    gauge("bastion_monitor_missing_rate", r.missing_rate);
    gauge("bastion_monitor_out_of_range_rate", r.out_of_range_rate);
    gauge("bastion_monitor_latency_p99_ms", r.latency_p99_ms);
    if let Some(d) = &r.drift {
        gauge("bastion_monitor_drift_share", d.drifted_share);
        gauge(
            "bastion_monitor_drift_dataset",
            if d.dataset_drift { 1.0 } else { 0.0 },
        );
        for c in &d.columns {
            metrics::gauge!("bastion_monitor_drift_score",
                "model" => model.to_owned(), "version" => version.to_owned(),
                "feature" => c.column.clone())
            .set(c.score);
        }
    }
    if let Some(p) = &r.prediction {
        gauge("bastion_monitor_prediction_drift_score", p.score);
    }
    if let Some(e) = &r.estimate {
        gauge("bastion_monitor_estimated_accuracy", e.accuracy);
        if let Some(auc) = e.roc_auc {
            gauge("bastion_monitor_estimated_roc_auc", auc);
        }
    }
}
