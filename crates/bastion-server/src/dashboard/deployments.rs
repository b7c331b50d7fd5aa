//! Deployments and monitoring: each served model's route table (stable, canary share,
//! shadow, pins), its recent request rate and latency percentiles from the inference
//! events, drift per feature over the monitor's windows, the callers' detector scores, and
//! its incidents with acknowledge / resolve. Deploy, promote and rollback go through a
//! confirmation page, then the same deployment change the API makes (audited).

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use bastion_auth::Permission;
use bastion_core::Error;
use bastion_monitor::signals::percentile;
use bastion_serve::deployment::{Change, DeployRequest, Deployment};
use bastion_store::meta::{
    CALLERS, EventQuery, Incident, IncidentQuery, STATUS_ACKNOWLEDGED, STATUS_RESOLVED, WINDOW,
};
use bastion_web::chart::{self, Rule, Series};
use bastion_web::fmt::{clip, num, time};
use bastion_web::layout::{Chrome, Nav, Page, Tone, badge, csrf_field, encode, pager, query};
use bastion_web::{Markup, html};

use super::models::{confirm_href, model_href, value_text, version_href};
use super::{chrome, model_permission, page_html};
use crate::error::ApiResult;
use crate::params::Params;
use crate::state::Scoped;

/// The traffic window the rate and latency figures cover.
const TRAFFIC_WINDOW_MS: i64 = 3_600_000;
/// Most events read for those figures.
const TRAFFIC_EVENTS: i64 = 10_000;
/// Monitor windows charted.
const WINDOWS_SHOWN: i64 = 200;

fn deployment_href(model: &str) -> String {
    format!("/ui/deployments/{}", encode(model))
}

fn route_table(d: &Deployment) -> Markup {
    let canary = d.canary.as_ref().map(|c| c.percent).unwrap_or(0.0);
    html! {
        table {
            thead { tr { th { "Route" } th { "Version" } th.n { "Share of unpinned traffic" } } }
            tbody {
                tr { td { "stable" } td { @match &d.stable { Some(v) => code { "v" (v) }, None => span.muted { "none" } } } td.n { (num(100.0 - canary)) "%" } }
                @if let Some(c) = &d.canary { tr { td { "canary" } td { code { "v" (c.version) } } td.n { (num(c.percent)) "%" } } }
                @if let Some(v) = &d.shadow { tr { td { "shadow (mirrored, answers discarded)" } td { code { "v" (v) } } td.n { "copy" } } }
                @for (label, v) in &d.pins { tr { td { "pinned: x-bastion-variant: " code { (label) } } td { code { "v" (v) } } td.n { "by header" } } }
            }
        }
        @if !d.history.is_empty() { p.muted { "Earlier stable versions: " @for v in d.history.iter().rev() { "v" (v) " " } } }
        @if !d.restricted.is_empty() {
            p { (badge(Tone::Warn, &format!("{} caller(s) restricted", d.restricted.len()))) }
        }
    }
}

/// GET /ui/deployments — every deployment the caller may read, and open incidents.
pub async fn list(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let mut rows = Vec::new();
    for d in s.meta.list_deployments().await? {
        if model_permission(&s, &d.model_name).await? >= Permission::Read {
            let body: Deployment = serde_json::from_value(d.body.clone()).unwrap_or_default();
            rows.push((d, body));
        }
    }
    let page = super::paged(rows, &p, |o| {
        format!("/ui/deployments{}", query(&[("offset", &o.to_string())]))
    })?;
    let rows = page.items;
    let body = html! {
        div.wrap { table {
            thead { tr { th { "Model" } th { "Stable" } th { "Canary" } th { "Shadow" } th { "Revision" } th { "Changed" } } }
            tbody {
                @for (d, b) in &rows {
                    tr {
                        td { a href=(deployment_href(&d.model_name)) { (d.model_name) } }
                        td { @if let Some(v) = &b.stable { "v" (v) } }
                        td { @if let Some(c) = &b.canary { "v" (c.version) " at " (num(c.percent)) "%" } }
                        td { @if let Some(v) = &b.shadow { "v" (v) } }
                        td { (d.revision) }
                        td { (time(d.updated_time)) " by " (clip(&d.updated_by, 40)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="6" { "Nothing is deployed. Models in production are served by their alias without a route table." } } }
            }
        } }
        (pager(page.prev.as_deref(), page.next.as_deref()))
    };
    let c = chrome(&s, &headers);
    Ok(page_html(
        Page::new("Deployments", Nav::Deployments)
            .refresh(30)
            .render(&c, body),
    ))
}

pub(crate) fn severity_badge(severity: &str) -> Markup {
    let bad = ["critical", "high"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(severity));
    badge(if bad { Tone::Bad } else { Tone::Warn }, severity)
}

fn incident_row(c: &Chrome, model: &str, i: &Incident, can_act: bool) -> Markup {
    let base = format!("{}/incidents/{}", deployment_href(model), i.id);
    html! {
        tr id={"incident-" (i.id)} {
            td { (i.id) }
            td { code { (i.rule) } @if !i.actor.is_empty() { br; span.muted { "caller " (i.actor) } } }
            td { (severity_badge(&i.severity)) }
            td { "v" (i.version) }
            td { (i.status) @if !i.note.is_empty() { br; span.muted { (clip(&i.note, 200)) } } }
            td.n { (i.alerts) }
            td { (time(i.opened_time)) }
            td {
                details { summary { "evidence" } code { (clip(&i.evidence["alert"].to_string(), 600)) } }
            }
            @if can_act {
                td {
                    @if i.status == "open" {
                        form.inline method="post" action={(base) "/acknowledge"} {
                            (csrf_field(c))
                            input type="text" name="note" placeholder="note" aria-label={"note for incident " (i.id)};
                            " " button.secondary type="submit" { "Acknowledge" }
                        }
                    }
                    @if i.status != STATUS_RESOLVED {
                        form.inline method="post" action={(base) "/resolve"} {
                            (csrf_field(c))
                            " " button type="submit" { "Resolve" }
                        }
                    }
                }
            }
        }
    }
}

/// GET /ui/deployments/{model} — one model's serving and monitoring.
pub async fn model(
    s: Scoped,
    headers: HeaderMap,
    Path(name): Path<String>,
    p: Params,
) -> ApiResult<Html<String>> {
    s.meta.get_registered_model(&name).await?;
    let (d, revision) = s.models.deployment(&name).await?;
    let can_deploy = model_permission(&s, &name).await? >= Permission::Deploy;
    let now = bastion_core::time::now_ms();
    let events = s
        .meta
        .inference_events(&EventQuery {
            model_name: Some(name.clone()),
            version: None,
            since_ms: Some(now - TRAFFIC_WINDOW_MS),
            after_id: None,
            limit: TRAFFIC_EVENTS,
        })
        .await?;
    // Requests per minute by version, and latency percentiles by version.
    let mut per_minute: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for e in &events {
        let v = if e.version.is_empty() {
            "refused".to_owned()
        } else {
            format!("v{}", e.version)
        };
        let minute = (e.time_ms - now) / 60_000;
        *per_minute
            .entry(v.clone())
            .or_default()
            .entry(minute)
            .or_default() += 1.0;
        latencies
            .entry(v.clone())
            .or_default()
            .push(e.latency_us as f64 / 1000.0);
        *outcomes
            .entry(v)
            .or_default()
            .entry(if e.decision.is_empty() {
                e.status.to_string()
            } else {
                e.decision.clone()
            })
            .or_default() += 1;
    }
    let rate: Vec<Series> = per_minute
        .into_iter()
        .map(|(v, m)| Series {
            name: v,
            points: m.into_iter().map(|(k, n)| (k as f64, n)).collect(),
        })
        .collect();
    for l in latencies.values_mut() {
        l.sort_by(f64::total_cmp);
    }
    let windows = s.meta.monitor_windows(&name, WINDOW, WINDOWS_SHOWN).await?;
    let mut drift: BTreeMap<String, (Vec<(f64, f64)>, f64)> = BTreeMap::new();
    for w in &windows {
        let x = (w.end_ms - now) as f64 / 60_000.0;
        if let Some(features) = w.report["features"].as_object() {
            for (f, r) in features {
                if let Some(score) = r["score"].as_f64() {
                    let entry = drift
                        .entry(format!("{f} (v{})", w.version))
                        .or_insert((Vec::new(), f64::NAN));
                    entry.0.push((x, score));
                    entry.1 = r["threshold"].as_f64().unwrap_or(f64::NAN);
                }
            }
        }
    }
    let callers = s.meta.monitor_windows(&name, CALLERS, 1).await?;
    let mut incidents = s
        .meta
        .list_incidents(&IncidentQuery {
            status: None,
            model_name: Some(name.clone()),
            before_id: p.opt_i64("before_id")?,
            limit: 50,
        })
        .await?;
    incidents.sort_by_key(|i| (i.status == STATUS_RESOLVED, -i.id));
    let c = chrome(&s, &headers);
    let done = p.opt_str("done")?;
    let body = html! {
        @if let Some(d) = &done { div.notice role="status" { (d) } }
        div.grid {
            div.card {
                h2 { "Traffic split" }
                (route_table(&d))
                p.muted { "Revision " (revision) ". " a href=(model_href(&name)) { "Versions and evidence" } }
                @if can_deploy {
                    p {
                        @if d.canary.is_some() {
                            a.button href=(confirm_href(&name, "promote", "")) { "Promote canary…" } " "
                        }
                        @if d.canary.is_some() || !d.history.is_empty() {
                            a.button.secondary href=(confirm_href(&name, "rollback", "")) { "Roll back…" }
                        }
                    }
                }
            }
            div.card {
                h2 { "Requests per minute (last hour)" }
                @if rate.is_empty() { p.muted { "No requests in the last hour." } }
                @else { (chart::lines("requests per minute", "minutes ago", "requests", &rate, None)) }
            }
            div.card {
                h2 { "Latency (last hour)" }
                div.wrap { table {
                    thead { tr { th { "Version" } th.n { "Requests" } th.n { "p50 ms" } th.n { "p95 ms" } th.n { "p99 ms" } th { "Outcomes" } } }
                    tbody {
                        @for (v, l) in &latencies {
                            tr {
                                td { (v) }
                                td.n { (l.len()) }
                                td.n { (num(percentile(l, 0.5))) }
                                td.n { (num(percentile(l, 0.95))) }
                                td.n { (num(percentile(l, 0.99))) }
                                td { @for (o, n) in outcomes.get(v).into_iter().flatten() { (o) ": " (n) " " } }
                            }
                        }
                    }
                } }
            }
        }
        h2 { "Drift per feature over the monitor's windows" }
        @if windows.is_empty() { p.muted { "No monitor windows recorded yet (" code { "bastion monitor" } " or " code { "bastion server --monitor-rules" } ")." } }
        @else if drift.is_empty() { p.muted { (windows.len()) " window(s) recorded, none with feature drift measured: the version has no training reference, or the deployment samples no input rows." } }
        div.grid {
            @for (feature, (points, threshold)) in &drift {
                div.card { (chart::lines(feature, "minutes ago", "drift score", &[Series { name: feature.clone(), points: points.clone() }], threshold.is_finite().then_some(Rule { y: *threshold }))) }
            }
        }
        @if let Some(w) = windows.last() {
            p.muted { "Newest window (v" (w.version) ", to " (time(w.end_ms)) "): "
                (value_text(&w.report["requests"])) " requests, error rate " (value_text(&w.report["error_rate"]))
                ", out-of-range rate " (value_text(&w.report["out_of_range_rate"])) ", p99 " (value_text(&w.report["latency_p99_ms"])) " ms" }
        }
        h2 { "Detector scores by caller" }
        @match callers.last() {
            None => p.muted { "No per-caller scores recorded yet." },
            Some(rec) => {
                p.muted { "As of " (time(rec.end_ms)) "; " (value_text(&rec.report["callers_seen"])) " caller(s) seen, highest extraction score first." }
                @let rows = rec.report["callers"].as_array().cloned().unwrap_or_default();
                @let keys: std::collections::BTreeSet<String> = rows.iter().filter_map(|c| c["signals"].as_object()).flat_map(|m| m.keys().cloned()).collect();
                div.wrap { table {
                    thead { tr { th { "Caller" } @for k in &keys { th.n { (k) } } } }
                    tbody {
                        @for c in &rows {
                            tr { td { (c["actor"].as_str().unwrap_or("")) } @for k in &keys { td.n { (value_text(&c["signals"][k.as_str()])) } } }
                        }
                    }
                } }
            }
        }
        h2 { "Incidents" }
        div.wrap { table {
            thead { tr { th { "#" } th { "Rule" } th { "Severity" } th { "Version" } th { "Status" } th.n { "Alerts" } th { "Opened" } th { "Evidence" } @if can_deploy { th { "Actions" } } } }
            tbody {
                @for i in &incidents { (incident_row(&c, &name, i, can_deploy)) }
                @if incidents.is_empty() { tr { td colspan="9" { "No incidents." } } }
            }
        } }
        @if incidents.len() == 50 {
            @if let Some(last) = incidents.iter().map(|i| i.id).min() {
                p { a href={(deployment_href(&name)) (query(&[("before_id", &last.to_string())]))} { "Older incidents →" } }
            }
        }
    };
    let title = format!("Deployment of {name}");
    Ok(page_html(
        Page::new(&title, Nav::Deployments)
            .crumb("Deployments", "/ui/deployments")
            .refresh(30)
            .render(&c, body),
    ))
}

/// What a confirmed action will do, in words.
fn describe(action: &str, version: &str, percent: &str, d: &Deployment) -> ApiResult<String> {
    Ok(match action {
        "stable" => format!(
            "Send all unpinned traffic to v{version} (now {}). The current stable version is kept for rollback. The version must pass admission (digest, signature, scan, gate).",
            d.stable
                .as_deref()
                .map(|v| format!("v{v}"))
                .unwrap_or("nothing".into())
        ),
        "canary" => format!(
            "Send {percent}% of unpinned traffic to v{version} as a canary; the rest stays on the stable version."
        ),
        "promote" => match &d.canary {
            Some(c) => format!(
                "Make the canary v{} the stable version for all unpinned traffic.",
                c.version
            ),
            None => return Err(Error::invalid_state("there is no canary to promote").into()),
        },
        "rollback" => match (&d.canary, d.history.last()) {
            (Some(c), _) => format!(
                "Drop the canary v{}: all unpinned traffic returns to the stable version.",
                c.version
            ),
            (None, Some(prev)) => {
                format!("Return all unpinned traffic to the previous stable version v{prev}.")
            }
            (None, None) => {
                return Err(Error::invalid_state("there is nothing to roll back to").into());
            }
        },
        other => {
            return Err(Error::invalid(format!(
                "unknown action '{}': stable, canary, promote or rollback",
                clip(other, 40)
            ))
            .into());
        }
    })
}

/// GET /ui/deployments/{model}/confirm?action=&version= — says what will happen, asks.
pub async fn confirm(
    s: Scoped,
    headers: HeaderMap,
    Path(name): Path<String>,
    p: Params,
) -> ApiResult<Html<String>> {
    let action = p.str("action")?;
    let version = p.opt_str("version")?.unwrap_or_default();
    let percent = p.opt_str("percent")?.unwrap_or_else(|| "10".into());
    if matches!(action.as_str(), "stable" | "canary") {
        s.meta.get_model_version(&name, &version).await?;
    }
    let (d, revision) = s.models.deployment(&name).await?;
    let what = describe(&action, &version, &percent, &d)?;
    let c = chrome(&s, &headers);
    let body = html! {
        div.card {
            p { (what) }
            form method="post" action={(deployment_href(&name)) "/change"} {
                (csrf_field(&c))
                input type="hidden" name="action" value=(action);
                input type="hidden" name="version" value=(version);
                input type="hidden" name="expected_revision" value=(revision);
                @if action == "canary" {
                    p { label { "Canary share (%) " input type="number" name="percent" min="0.1" max="99.9" step="0.1" value=(percent) required; } }
                }
                p {
                    button type="submit" { "Confirm" } " "
                    a.button.secondary href=(deployment_href(&name)) { "Cancel" }
                }
            }
            @if !version.is_empty() { p.muted { a href=(version_href(&name, &version)) { "Evidence of v" (version) } } }
        }
    };
    let title = format!("Confirm: {action} {name}");
    Ok(page_html(
        Page::new(&title, Nav::Deployments)
            .crumb("Deployments", "/ui/deployments")
            .crumb(name.clone(), deployment_href(&name))
            .render(&c, body),
    ))
}

/// POST /ui/deployments/{model}/change — the confirmed action, as the API's deployment
/// change (admission, audit); back to the deployment page.
pub async fn change(
    s: Scoped,
    headers: HeaderMap,
    Path(name): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let action = p.str("action")?;
    let version = p.opt_str("version")?.unwrap_or_default();
    let change = match action.as_str() {
        "stable" => Change::Stable {
            version: version.clone(),
        },
        "canary" => {
            let percent = p
                .str("percent")?
                .parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0 && *x < 100.0)
                .ok_or_else(|| Error::invalid("percent must be a number between 0 and 100"))?;
            Change::Canary {
                version: version.clone(),
                percent,
            }
        }
        "promote" => Change::Promote,
        "rollback" => Change::Rollback,
        other => {
            return Err(Error::invalid(format!("unknown action '{}'", clip(other, 40))).into());
        }
    };
    let mut request = DeployRequest::new(change);
    request.expected_revision = match p.opt_str("expected_revision")? {
        Some(r) if !r.is_empty() => Some(
            r.parse()
                .map_err(|_| Error::invalid("expected_revision must be a number"))?,
        ),
        _ => None,
    };
    let _shown = crate::deployments::apply(&s, &headers, &name, request).await?;
    let done = match action.as_str() {
        "stable" => format!("v{version} is now the stable version."),
        "canary" => format!("v{version} is now the canary."),
        "promote" => "The canary was promoted.".into(),
        _ => "Rolled back.".into(),
    };
    Ok(Redirect::to(&format!(
        "{}{}",
        deployment_href(&name),
        query(&[("done", &done)])
    ))
    .into_response())
}

async fn incident_action(
    s: Scoped,
    name: String,
    id: i64,
    p: Params,
    status: &str,
) -> ApiResult<Response> {
    let _shown = crate::incidents::set_status(s, name.clone(), id, p, status).await?;
    Ok(Redirect::to(&format!("{}#incident-{id}", deployment_href(&name))).into_response())
}

pub async fn acknowledge(
    s: Scoped,
    Path((name, id)): Path<(String, i64)>,
    p: Params,
) -> ApiResult<Response> {
    incident_action(s, name, id, p, STATUS_ACKNOWLEDGED).await
}

pub async fn resolve(
    s: Scoped,
    Path((name, id)): Path<(String, i64)>,
    p: Params,
) -> ApiResult<Response> {
    incident_action(s, name, id, p, STATUS_RESOLVED).await
}
