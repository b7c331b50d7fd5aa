//! Carrying out what alert rules ask for. Responses wait in the store's outbox as
//! `pending`; each is taken by one worker, carried out, and recorded with what happened
//! (audited as `monitor.respond.<response>`). Every change a response makes to a deployment
//! or a model goes through the same store calls a person's change does, audited as
//! `system:monitor` with the incident as the request id.
//!
//! - `log`: a warning in the worker's log.
//! - `webhook`: POST of the incident as JSON, signed: `X-Bastion-Signature: sha256=HEX`, the
//!   HMAC-SHA256 of `TIMESTAMP.BODY` with the key in `webhook_secret_env`, and the
//!   timestamp (ms) in `X-Bastion-Timestamp`, so a receiver can refuse replays. Unsigned
//!   webhooks are never sent.
//! - `rollback`: the version's deployment goes back (a canary is dropped; a stable version
//!   returns to the previous one). A version no longer in service is skipped; a faulty
//!   stable version with a canary beside it is left to a person, since a rollback would drop
//!   the canary instead.
//! - `label_only`: the registered model's output policy becomes `label`.
//! - `quarantine`: the version is quarantined; serving refuses it within its re-check
//!   interval.
//! - `block_actor`, `throttle_actor`: the alert's caller is blocked on the model, or held to
//!   `throttle_rate` requests per second, for `restrict_for` (or until lifted). Skipped for
//!   model-wide alerts, which name no caller.
//! - `rerun_pipeline`: the `[respond] pipeline` file is run again; what it trains goes
//!   through the pipeline's own gates and canary before it serves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bastion_audit::entry::Outcome;
use bastion_core::model::KeyValue;
use bastion_core::time;
use bastion_monitor::RespondSettings;
use bastion_serve::deployment::{Change, DeployRequest};
use bastion_serve::policy::OUTPUT_POLICY_TAG;
use bastion_serve::{Caller, Models};
use bastion_store::MetaStore;
use bastion_store::meta::{AuditContext, AuditDraft, Incident, IncidentResponse};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::error::WatchResult;

/// Runs a pipeline file for `rerun_pipeline` (the binary knows how; this crate does not).
pub trait PipelineRunner: Send + Sync {
    fn run<'a>(
        &'a self,
        pipeline: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

/// What carrying out a response came to; an `Err` is a failure, with the reason.
enum Done {
    Done(String),
    Skipped(String),
}

/// Responses taken per step, at most.
const PER_STEP: i64 = 100;
/// Webhook attempts, and the pause before the second (doubling).
const WEBHOOK_ATTEMPTS: u32 = 3;
const WEBHOOK_BACKOFF: Duration = Duration::from_millis(500);

pub const SIGNATURE_HEADER: &str = "x-bastion-signature";
pub const TIMESTAMP_HEADER: &str = "x-bastion-timestamp";

pub struct Responder {
    meta: MetaStore,
    models: Arc<Models>,
    settings: RespondSettings,
    http: reqwest::Client,
    pipeline: Option<Arc<dyn PipelineRunner>>,
    /// The webhook's HMAC key, read from `webhook_secret_env` when the responder is made.
    webhook_key: Option<Vec<u8>>,
}

/// `sha256=HEX`: the HMAC-SHA256 of `timestamp.body` under `key`.
pub fn signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Responder {
    pub fn new(meta: MetaStore, models: Arc<Models>, settings: RespondSettings) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let webhook_key = std::env::var(&settings.webhook_secret_env)
            .ok()
            .filter(|k| !k.is_empty())
            .map(String::into_bytes);
        if settings.webhook.is_some() && webhook_key.is_none() {
            tracing::warn!(variable = %settings.webhook_secret_env,
                "a webhook is configured but its HMAC key variable is not set: webhooks will fail");
        }
        Self {
            meta,
            models,
            settings,
            http,
            pipeline: None,
            webhook_key,
        }
    }

    /// Signs webhooks with `key` instead of the environment's.
    pub fn with_webhook_key(mut self, key: &[u8]) -> Self {
        self.webhook_key = Some(key.to_vec());
        self
    }

    pub fn with_pipeline_runner(mut self, runner: Arc<dyn PipelineRunner>) -> Self {
        self.pipeline = Some(runner);
        self
    }

    /// Takes and carries out pending responses; returns how many this worker did.
    pub async fn carry_out_pending(&self) -> WatchResult<usize> {
        let mut n = 0;
        for r in self.meta.pending_responses(PER_STEP).await? {
            if !self.meta.claim_response(r.id).await? {
                continue;
            }
            let (incident, _) = self.meta.get_incident(r.incident_id).await?;
            let (status, detail) = match self.carry_out(&incident, &r).await {
                Ok(Done::Done(d)) => ("done", d),
                Ok(Done::Skipped(d)) => ("skipped", d),
                Err(d) => ("failed", d),
            };
            metrics::counter!("bastion_monitor_responses_total",
                "response" => r.response.clone(), "status" => status)
            .increment(1);
            if status == "failed" {
                tracing::error!(incident = incident.id, response = %r.response, reason = %detail, "monitor response failed");
            } else {
                tracing::info!(incident = incident.id, response = %r.response, status, detail = %detail, "monitor response");
            }
            self.meta.finish_response(&r, status, &detail).await?;
            n += 1;
        }
        Ok(n)
    }

    async fn carry_out(&self, i: &Incident, r: &IncidentResponse) -> Result<Done, String> {
        match r.response.as_str() {
            "log" => {
                tracing::warn!(incident = i.id, rule = %i.rule, model = %i.model_name,
                    version = %i.version, actor = %i.actor, severity = %i.severity,
                    evidence = %i.evidence, "monitor incident");
                Ok(Done::Done("logged".into()))
            }
            "webhook" => self.webhook(i, r).await,
            "rollback" => self.rollback(i).await,
            "label_only" => self.label_only(i).await,
            "quarantine" => self.quarantine(i).await,
            "block_actor" => self.restrict(i, None).await,
            "throttle_actor" => self.restrict(i, Some(self.settings.throttle_rate)).await,
            "rerun_pipeline" => self.rerun(i).await,
            other => Err(format!("unknown response '{other}'")),
        }
    }

    fn audited(&self, i: &Incident, action: &str, resource: String) -> MetaStore {
        self.meta.audited(AuditContext::new(AuditDraft {
            actor: "system:monitor".into(),
            action: action.to_owned(),
            resource,
            request_id: format!("incident:{}", i.id),
            outcome: Outcome::Success,
            body_sha256: None,
        }))
    }

    async fn webhook(&self, i: &Incident, r: &IncidentResponse) -> Result<Done, String> {
        let Some(url) = &self.settings.webhook else {
            return Ok(Done::Skipped("no [respond] webhook is configured".into()));
        };
        let var = &self.settings.webhook_secret_env;
        let key = self.webhook_key.as_deref().ok_or_else(|| {
            format!(
                "the webhook's HMAC key variable {var} is not set: unsigned webhooks are not sent"
            )
        })?;
        let body = serde_json::to_vec(&json!({
            "incident": i,
            "response_id": r.id,
        }))
        .map_err(|e| e.to_string())?;
        let mut pause = WEBHOOK_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            let timestamp = time::now_ms().to_string();
            let sent = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header(TIMESTAMP_HEADER, &timestamp)
                .header(SIGNATURE_HEADER, signature(key, &timestamp, &body))
                .header("x-bastion-delivery", r.id.to_string())
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    return Ok(Done::Done(format!(
                        "delivered to {url} ({}) on attempt {attempt}",
                        resp.status()
                    )));
                }
                Ok(resp) => last = format!("{url} answered {}", resp.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
            if attempt < WEBHOOK_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Err(format!("{last} (after {WEBHOOK_ATTEMPTS} attempts)"))
    }

    async fn change(&self, i: &Incident, request: DeployRequest) -> Result<(), String> {
        let audited = self.audited(
            i,
            request.change.action(),
            format!("registered_model:{}", i.model_name),
        );
        let caller = Caller {
            actor: "system:monitor",
            request_id: "",
        };
        self.models
            .change(&i.model_name, &request, &audited, caller)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn rollback(&self, i: &Incident) -> Result<Done, String> {
        let (d, revision) = self
            .models
            .deployment(&i.model_name)
            .await
            .map_err(|e| e.to_string())?;
        let canary = d.canary.as_ref().map(|c| c.version.as_str());
        let stable = d.stable.as_deref();
        if canary != Some(i.version.as_str()) && stable != Some(i.version.as_str()) {
            return Ok(Done::Skipped(format!(
                "version {} takes no unpinned traffic of '{}' now (stable {}, canary {}): nothing to roll back",
                i.version,
                i.model_name,
                stable.unwrap_or("none"),
                canary.unwrap_or("none")
            )));
        }
        if stable == Some(i.version.as_str()) && canary.is_some() {
            return Err(format!(
                "version {} is the stable version and a canary is deployed beside it: a rollback \
                 would drop the canary, not this version; left to a person",
                i.version
            ));
        }
        let mut request = DeployRequest::new(Change::Rollback);
        // Only the deployment this incident saw: a change made meanwhile wins.
        request.expected_revision = Some(revision);
        self.change(i, request).await?;
        let (after, _) = self
            .models
            .deployment(&i.model_name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Done::Done(format!(
            "rolled back version {}: '{}' now serves version {}",
            i.version,
            i.model_name,
            after.stable.as_deref().unwrap_or("none")
        )))
    }

    async fn label_only(&self, i: &Incident) -> Result<Done, String> {
        let model = self
            .meta
            .get_registered_model(&i.model_name)
            .await
            .map_err(|e| e.to_string())?;
        if model
            .tags
            .iter()
            .any(|t| t.key == OUTPUT_POLICY_TAG && t.value == "label")
        {
            return Ok(Done::Skipped(format!(
                "'{}' already answers with labels only",
                i.model_name
            )));
        }
        self.audited(
            i,
            "registered-models.set-tag",
            format!("registered_model:{}", i.model_name),
        )
        .set_registered_model_tag(
            &i.model_name,
            &KeyValue {
                key: OUTPUT_POLICY_TAG.into(),
                value: "label".into(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Done::Done(format!(
            "'{}' now answers with labels only ({OUTPUT_POLICY_TAG} = label)",
            i.model_name
        )))
    }

    async fn quarantine(&self, i: &Incident) -> Result<Done, String> {
        let reason = format!("quarantined by the monitor: incident {} ({})", i.id, i.rule);
        self.audited(
            i,
            "model-versions.quarantine",
            format!("registered_model:{}/{}", i.model_name, i.version),
        )
        .quarantine_model_version(&i.model_name, &i.version, &reason)
        .await
        .map_err(|e| e.to_string())?;
        Ok(Done::Done(format!(
            "version {} of '{}' is quarantined",
            i.version, i.model_name
        )))
    }

    async fn restrict(&self, i: &Incident, rate: Option<u32>) -> Result<Done, String> {
        if i.actor.is_empty() {
            return Ok(Done::Skipped(
                "the alert is about the model, not a caller: there is no one to restrict".into(),
            ));
        }
        let until_ms = self.settings.restrict_for_ms.map(|d| time::now_ms() + d);
        let request = DeployRequest::new(Change::Restrict {
            actor: i.actor.clone(),
            rate,
            reason: format!("incident {} ({})", i.id, i.rule),
            until_ms,
        });
        self.change(i, request).await?;
        let what = match rate {
            None => "blocked".to_owned(),
            Some(r) => format!("throttled to {r} request(s) per second"),
        };
        let until = until_ms.map_or("until lifted".to_owned(), |t| format!("until {t} ms"));
        Ok(Done::Done(format!(
            "'{}' is {what} on '{}' {until}",
            i.actor, i.model_name
        )))
    }

    async fn rerun(&self, i: &Incident) -> Result<Done, String> {
        let Some(pipeline) = &self.settings.pipeline else {
            return Ok(Done::Skipped("no [respond] pipeline is configured".into()));
        };
        let Some(runner) = &self.pipeline else {
            return Ok(Done::Skipped(
                "this worker cannot run pipelines (no runner)".into(),
            ));
        };
        tracing::info!(incident = i.id, pipeline, "re-running the pipeline");
        runner
            .run(pipeline)
            .await
            .map(|summary| Done::Done(format!("ran {pipeline}: {summary}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let s = signature(b"key", "1700000000000", b"{\"a\":1}");
        // Python: hmac.new(b"key", b'1700000000000.{"a":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            s,
            "sha256=2c8bc12f88d77789404ce0a63cf69acf735ba98832f7a7d36147f537be556f3e"
        );
        assert_eq!(s, signature(b"key", "1700000000000", b"{\"a\":1}"));
        assert_ne!(s, signature(b"key", "1700000000001", b"{\"a\":1}"));
        assert_ne!(s, signature(b"key", "1700000000000", b"{\"a\":2}"));
        assert_ne!(s, signature(b"other", "1700000000000", b"{\"a\":1}"));
    }
}
