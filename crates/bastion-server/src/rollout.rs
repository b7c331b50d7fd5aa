//! The inference request path after authentication: the model's limits (a layer on the
//! `infer` routes), the body size limit, the choice of version (the URL's version, else the
//! deployment's route table: header-pinned variant, weighted canary, stable), the
//! `bastion-serve` pipeline (decode, guards, model — alone or micro-batched — output policy),
//! a canary failure answered by the stable version and counted against the canary, the
//! shadow copy, metrics and the inference event.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::body::{Bytes, to_bytes};
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bastion_core::Digest;
use bastion_serve::deployed::Live;
use bastion_serve::deployment::{Route, VARIANT_HEADER};
use bastion_serve::guard::{GuardSettings, Verdict};
use bastion_serve::pipeline::{self, Answer};
use bastion_serve::tensor::TensorLimits;
use bastion_serve::{Caller, ServeError};
use bastion_store::meta::InferenceEvent;
use serde_json::{Value, json};

use crate::inference::{HEADER_LENGTH, OipError, OipResult, caller_of, encoded, status_of};
use crate::state::Scoped;

/// The model's deployment as the limits layer found it, for the handler.
#[derive(Clone)]
struct Deployed(Option<Arc<Live>>);

/// The per-model rate and concurrency limits (a deployment's `limits`), checked before the
/// body is read. The request's place is held until its answer is ready.
pub async fn limits(
    s: Scoped,
    Path(params): Path<HashMap<String, String>>,
    mut req: Request,
    next: Next,
) -> Response {
    let name = params.get("model_name").cloned().unwrap_or_default();
    let live = match s.models.live(&name).await {
        Ok(l) => l,
        Err(e) => return OipError::from(e).into_response(),
    };
    let actor = s.principal.actor();
    let place = match &live {
        None => None,
        Some(l) => match l.limits.admit(&name, &actor) {
            Ok(p) => Some(p),
            Err(e) => {
                let counter = if matches!(e, ServeError::Blocked(_)) {
                    "bastion_inference_blocked_total"
                } else {
                    "bastion_inference_limited_total"
                };
                metrics::counter!(counter, "model" => name.clone()).increment(1);
                let caller = caller_of(req.headers(), &actor);
                let mut event = event_of(&name, "", Route::Direct, caller, "");
                event.status = i64::from(status_of(&e).as_u16());
                event.decision = decision(Err(&e)).into();
                record(&s, event);
                return OipError::from(e).into_response();
            }
        },
    };
    req.extensions_mut().insert(Deployed(live));
    let response = next.run(req).await;
    drop(place);
    response
}

/// Whether an error is the version's fault (counted against a canary), not the input's.
fn is_failure(e: &ServeError) -> bool {
    matches!(
        e,
        ServeError::Refused { .. }
            | ServeError::Load(_)
            | ServeError::Model(_)
            | ServeError::Store(_)
            | ServeError::Evidence(_)
    )
}

pub async fn run(s: Scoped, name: String, version: Option<String>, req: Request) -> Response {
    match serve(s, name, version, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    s: Scoped,
    name: String,
    version: Option<String>,
    req: Request,
) -> OipResult<Response> {
    let (parts, body) = req.into_parts();
    let live = parts
        .extensions
        .get::<Deployed>()
        .cloned()
        .and_then(|d| d.0);
    let header_len = match parts.headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    OipError(
                        StatusCode::BAD_REQUEST,
                        "Inference-Header-Content-Length must be a byte count".into(),
                    )
                })?,
        ),
    };
    let limit = s.config.max_infer_bytes;
    let wait = s.config.infer_body_timeout;
    let bytes = match tokio::time::timeout(wait, to_bytes(body, limit)).await {
        Err(_) => {
            return Err(OipError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    wait.as_secs_f64()
                ),
            ));
        }
        Ok(Err(_)) => {
            return Err(OipError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over the limit of {limit} bytes"),
            ));
        }
        Ok(Ok(b)) => b,
    };
    let actor = s.principal.actor();
    let digest = input_digest(&bytes).await;
    let job = Job {
        s: &s,
        name: &name,
        live: live.as_ref(),
        bytes: &bytes,
        header_len,
        caller: caller_of(&parts.headers, &actor),
        digest: &digest,
    };
    let started = Instant::now();
    let (version, route) = match choose(&s, &name, version, live.as_deref(), &parts.headers).await {
        Ok(chosen) => chosen,
        Err(e) => {
            job.observe("", Route::Direct, started.elapsed(), Err(&e));
            return Err(e.into());
        }
    };
    let mut outcome = job.answer(&version).await;
    let mut served = (version, route);
    if route == Route::Canary
        && let Some(l) = &live
    {
        let failed = outcome.as_ref().err().is_some_and(is_failure);
        s.models
            .canary_answered(l, failed, started.elapsed().as_secs_f64() * 1e3);
        if failed && let Some(stable) = l.deployment.stable.clone() {
            // The caller gets the stable version's answer; the canary's failure is counted.
            metrics::counter!("bastion_canary_fallbacks_total", "model" => name.clone())
                .increment(1);
            outcome = job.answer(&stable).await;
            served = (stable, Route::Stable);
        }
    }
    let (version, route) = served;
    job.observe(&version, route, started.elapsed(), outcome.as_ref());
    if matches!(route, Route::Stable | Route::Canary)
        && let Some(l) = &live
        && let Some(shadow) = l.deployment.shadow.clone()
        && shadow != version
    {
        match l.shadow_slot() {
            // Shadow copies never pile up behind a slow shadow version: beyond the slots in
            // use, requests are not mirrored.
            None => metrics::counter!("bastion_shadow_skipped_total", "model" => name.clone())
                .increment(1),
            Some(slot) => {
                let primary = outcome.as_ref().ok().map(|a| a.outputs.clone());
                let (s, name, l) = (s.clone(), name.clone(), l.clone());
                let (actor, request_id) = (actor.clone(), job.caller.request_id.to_owned());
                tokio::spawn(async move {
                    let job = Job {
                        s: &s,
                        name: &name,
                        live: Some(&l),
                        bytes: &bytes,
                        header_len,
                        caller: Caller {
                            actor: &actor,
                            request_id: &request_id,
                        },
                        digest: &digest,
                    };
                    job.mirror(&shadow, primary).await;
                    drop(slot);
                });
            }
        }
    }
    let answer = outcome?;
    Ok(encoded(answer.body, answer.header_len))
}

/// The request body's SHA-256 (hex), for its inference event; a large body is hashed on the
/// blocking pool, not on a runtime thread.
async fn input_digest(bytes: &Bytes) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    if bytes.len() <= 64 << 10 {
        return Digest::of(bytes).hex();
    }
    let b = bytes.clone();
    tokio::task::spawn_blocking(move || Digest::of(&b).hex())
        .await
        .unwrap_or_default()
}

/// The version a request goes to and how.
async fn choose(
    s: &Scoped,
    name: &str,
    version: Option<String>,
    live: Option<&Live>,
    headers: &HeaderMap,
) -> Result<(String, Route), ServeError> {
    if let Some(v) = version {
        return Ok((s.models.resolve(name, Some(&v)).await?, Route::Direct));
    }
    let variant = match headers.get(VARIANT_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ServeError::BadRequest(format!("{VARIANT_HEADER} must be a variant label"))
        })?),
    };
    if let Some(l) = live
        && let Some(chosen) = l.route(variant)?
    {
        return Ok(chosen);
    }
    if variant.is_some() {
        return Err(ServeError::BadRequest(format!(
            "model '{name}' has no deployment to pin a variant of ({VARIANT_HEADER})"
        )));
    }
    Ok((s.models.resolve(name, None).await?, Route::Direct))
}

static DEFAULT_GUARDS: LazyLock<GuardSettings> = LazyLock::new(GuardSettings::default);

fn guards_of(live: Option<&Live>) -> &GuardSettings {
    live.map_or(&DEFAULT_GUARDS, |l| &l.deployment.guards)
}

/// One request: its bytes, who sent it, and the model it is for.
struct Job<'a> {
    s: &'a Scoped,
    name: &'a str,
    live: Option<&'a Arc<Live>>,
    bytes: &'a Bytes,
    header_len: Option<usize>,
    caller: Caller<'a>,
    /// The body's SHA-256, once per request (the shadow's event reuses it).
    digest: &'a str,
}

impl Job<'_> {
    /// The version's answer: admitted and loaded, prepared (decode, guards), predicted
    /// (alone or in a micro-batch), finished (output policy, encoding).
    async fn answer(&self, version: &str) -> Result<Answer, ServeError> {
        let model = self.s.models.get(self.name, version, self.caller).await?;
        let guards = guards_of(self.live.map(|l| l.as_ref())).clone();
        let reference = self
            .live
            .and_then(|l| l.reference.clone())
            .or_else(|| model.reference.clone());
        let limits: TensorLimits = self.s.models.config.tensor_limits;
        let keep_rows = self.s.models.sample_rows();
        let bytes = self.bytes.clone();
        let header_len = self.header_len;
        let batcher = self.live.and_then(|l| l.batcher(&model));
        let m = model.clone();
        let prepare = move || {
            pipeline::prepare(
                &m,
                &bytes,
                header_len,
                limits,
                &guards,
                reference.as_deref(),
            )
        };
        let Some(batcher) = batcher else {
            let m = model.clone();
            let run = move || {
                let started = Instant::now();
                let p = prepare()?;
                let prediction = pipeline::predict(&m, &p.table)?;
                let answer = pipeline::finish(&m, p, &prediction, keep_rows);
                m.cost.record(started.elapsed());
                answer
            };
            if model.cost.quick(self.bytes.len()) {
                return run();
            }
            return blocking(run).await;
        };
        let mut prepared = blocking(prepare).await?;
        // A sampled request keeps its rows for its event; the others hand theirs over.
        let table = if keep_rows {
            prepared.table.clone()
        } else {
            std::mem::take(&mut prepared.table)
        };
        let rows = table.rows();
        let prediction = batcher.predict(table).await?;
        if prediction.rows() != rows {
            return Err(ServeError::Model(format!(
                "the batch answered {} rows for a request of {rows}",
                prediction.rows()
            )));
        }
        blocking(move || pipeline::finish(&model, prepared, &prediction, keep_rows)).await
    }

    /// Runs the shadow version on the same request; its answer is compared with the
    /// primary's and recorded, never returned.
    async fn mirror(&self, shadow: &str, primary: Option<Value>) {
        let started = Instant::now();
        let mut outcome = self.answer(shadow).await;
        let agreement = match (&outcome, &primary) {
            (Ok(a), Some(p)) => agreement(p, &a.outputs),
            _ => None,
        };
        let result = match agreement {
            Some(x) if x >= 1.0 => "agree",
            Some(_) => "disagree",
            None => "error",
        };
        metrics::counter!(
            "bastion_shadow_comparisons_total",
            "model" => self.name.to_owned(),
            "version" => shadow.to_owned(),
            "result" => result
        )
        .increment(1);
        if let (Ok(a), Some(x)) = (&mut outcome, agreement) {
            a.outputs["agreement"] = json!(x);
        }
        self.observe(shadow, Route::Shadow, started.elapsed(), outcome.as_ref());
    }

    /// Metrics and the inference event of one answer.
    fn observe(
        &self,
        version: &str,
        route: Route,
        latency: std::time::Duration,
        outcome: Result<&Answer, &ServeError>,
    ) {
        let name = self.name;
        let settings = guards_of(self.live.map(|l| l.as_ref()));
        let decided = decision(outcome);
        let labels = [
            ("model", name.to_owned()),
            ("version", version.to_owned()),
            ("route", route.as_str().to_owned()),
        ];
        metrics::counter!(
            "bastion_inference_requests_total",
            &[&labels[..], &[("outcome", decided.to_owned())]].concat()
        )
        .increment(1);
        metrics::histogram!("bastion_inference_duration_seconds", &labels)
            .record(latency.as_secs_f64());
        let mut event = event_of(name, version, route, self.caller, self.digest);
        event.latency_us = latency.as_micros().min(i64::MAX as u128) as i64;
        event.decision = decided.into();
        match outcome {
            Ok(a) => {
                count_guards(name, version, &a.verdict, settings);
                event.status = 200;
                event.rows = a.rows as i64;
                event.features = a.features.clone();
                event.outputs = a.outputs.clone();
                event.guards = serde_json::to_value(&a.verdict).unwrap_or_default();
            }
            Err(e) => {
                if let ServeError::Guarded { guard, .. } = e {
                    metrics::counter!(
                        "bastion_inference_guard_total",
                        "model" => name.to_owned(),
                        "version" => version.to_owned(),
                        "guard" => *guard,
                        "action" => "reject"
                    )
                    .increment(1);
                }
                event.status = i64::from(status_of(e).as_u16());
                event.guards = json!({ "error": e.to_string() });
            }
        }
        record(self.s, event);
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServeError::Model(e.to_string()))?
}

/// The share of rows on which two answers agree (same label; values within 1e-6 relative).
fn agreement(a: &Value, b: &Value) -> Option<f64> {
    let pairs: Vec<bool> =
        if let (Some(x), Some(y)) = (a["labels"].as_array(), b["labels"].as_array()) {
            x.iter().zip(y).map(|(p, q)| p == q).collect()
        } else if let (Some(x), Some(y)) = (a["values"].as_array(), b["values"].as_array()) {
            x.iter()
                .zip(y)
                .map(|(p, q)| match (p.as_f64(), q.as_f64()) {
                    (Some(p), Some(q)) => (p - q).abs() <= 1e-6 * p.abs().max(q.abs()).max(1.0),
                    _ => false,
                })
                .collect()
        } else {
            return None;
        };
    if pairs.is_empty() {
        return None;
    }
    Some(pairs.iter().filter(|x| **x).count() as f64 / pairs.len() as f64)
}

fn decision(outcome: Result<&Answer, &ServeError>) -> &'static str {
    match outcome {
        Ok(a) if a.verdict.is_clean() => "ok",
        Ok(_) => "flagged",
        Err(ServeError::Guarded { .. } | ServeError::BadRequest(_)) => "rejected",
        Err(ServeError::Refused { .. }) => "refused",
        Err(ServeError::NotFound(_)) => "not-found",
        Err(ServeError::Limited(_)) => "limited",
        Err(ServeError::Blocked(_)) => "blocked",
        Err(_) => "error",
    }
}

fn count_guards(name: &str, version: &str, v: &Verdict, settings: &GuardSettings) {
    for (guard, n) in &v.counts {
        let action = match *guard {
            "range" => settings.range,
            "nan" => settings.nan,
            "category" => settings.category,
            _ => settings.ood,
        };
        metrics::counter!(
            "bastion_inference_guard_total",
            "model" => name.to_owned(),
            "version" => version.to_owned(),
            "guard" => *guard,
            "action" => action.as_str()
        )
        .increment(*n);
    }
}

fn event_of(
    name: &str,
    version: &str,
    route: Route,
    caller: Caller<'_>,
    digest: &str,
) -> InferenceEvent {
    InferenceEvent {
        id: 0,
        time_ms: bastion_core::time::now_ms(),
        model_name: name.to_owned(),
        version: version.to_owned(),
        route: route.as_str().into(),
        actor: caller.actor.to_owned(),
        request_id: caller.request_id.to_owned(),
        latency_us: 0,
        status: 0,
        decision: String::new(),
        input_digest: digest.to_owned(),
        rows: 0,
        features: Value::Null,
        outputs: Value::Null,
        guards: Value::Null,
    }
}

fn record(s: &Scoped, event: InferenceEvent) {
    if let Some(events) = &s.models.events {
        events.record(event);
    }
}
