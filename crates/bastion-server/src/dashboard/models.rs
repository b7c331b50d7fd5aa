//! Registered models: the list, one model's versions with their posture, and one version's
//! evidence (scan findings, signature and provenance, the gate decision rule by rule,
//! red-team and privacy results, the ML-BOM) with the deploy actions its caller may take.

use axum::http::HeaderMap;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use bastion_auth::Permission;
use bastion_core::model::ModelVersion;
use bastion_core::{Digest, Error};
use bastion_evidence::gate::{self, GATE, REDTEAM};
use bastion_evidence::{PROVENANCE, SIGNATURE};
use bastion_store::meta::{Evidence, IncidentQuery, STATUS_ACKNOWLEDGED, STATUS_OPEN};
use bastion_web::chart::{self, Series};
use bastion_web::fmt::{bytes, clip, num, time};
use bastion_web::layout::{Nav, Page, Tone, badge, encode, facts, pager, query};
use bastion_web::posture::{self, Posture, RedTeam};
use bastion_web::{Markup, html};
use serde_json::Value;

use super::{chrome, model_permission, page_html};
use crate::error::ApiResult;
use crate::params::Params;
use crate::state::Scoped;

/// A value for the search grammar's string literal.
pub(crate) fn quoted(s: &str) -> ApiResult<String> {
    if !s.contains('\'') {
        Ok(format!("'{s}'"))
    } else if !s.contains('"') {
        Ok(format!("\"{s}\""))
    } else {
        Err(Error::invalid("names with both kinds of quote cannot be searched").into())
    }
}

pub(crate) fn model_href(name: &str) -> String {
    format!("/ui/model{}", query(&[("name", name)]))
}

pub(crate) fn version_href(name: &str, version: &str) -> String {
    format!(
        "/ui/model-version{}",
        query(&[("name", name), ("version", version)])
    )
}

/// What the evidence recorded about a version says, with the score it earns.
pub(crate) struct VersionStatus {
    pub root: Option<Digest>,
    pub evidence: posture::Evidence,
    pub posture: Posture,
    pub gate_detail: String,
    /// Every piece of evidence on the root digest, newest first.
    pub recorded: Vec<Evidence>,
    pub files: bastion_evidence::VersionEvidence,
}

/// The newest evidence of `kind` among what is recorded on a digest.
pub(crate) fn newest<'a>(recorded: &'a [Evidence], kind: &str) -> Option<&'a Evidence> {
    recorded
        .iter()
        .filter(|e| e.kind == kind)
        .max_by_key(|e| e.id)
}

/// The red-team figures the score reads: the worst robust accuracy over every attack and
/// budget, and the membership-inference AUC.
fn redteam_of(e: &Evidence) -> RedTeam {
    let metrics = e.body["metrics"].as_object();
    let worst = metrics.and_then(|m| {
        m.iter()
            .filter(|(k, _)| k.ends_with(".robust_accuracy"))
            .filter_map(|(_, v)| v.as_f64())
            .reduce(f64::min)
    });
    RedTeam {
        worst_robust_accuracy: worst,
        membership_auc: metrics
            .and_then(|m| m.get("privacy.membership_auc"))
            .and_then(Value::as_f64),
    }
}

pub(crate) async fn status(s: &Scoped, mv: &ModelVersion) -> ApiResult<VersionStatus> {
    let (name, version) = (mv.name.as_str(), mv.version.as_str());
    let root = s.meta.model_version_root_digest(name, version).await?;
    let recorded = match &root {
        Some(r) => s.meta.evidence_for(r).await?,
        None => Vec::new(),
    };
    let files = s
        .scans
        .model_version_evidence(&s.meta, name, version)
        .await?;
    let clearance = gate::clearance(&s.meta, &s.attestor, name, version, None).await?;
    let mut incidents = Vec::new();
    for status in [STATUS_OPEN, STATUS_ACKNOWLEDGED] {
        let q = IncidentQuery {
            status: Some(status.into()),
            model_name: Some(name.into()),
            before_id: None,
            limit: 200,
        };
        for i in s.meta.list_incidents(&q).await? {
            if i.version == version || i.version.is_empty() {
                incidents.push(i.severity);
            }
        }
    }
    let evidence = posture::Evidence {
        signed: newest(&recorded, SIGNATURE).is_some(),
        quarantine: files.quarantine.clone(),
        scan_worst: files.max_severity().map(str::to_owned),
        gate: clearance.decision.map(|_| clearance.ok),
        redteam: newest(&recorded, REDTEAM).map(redteam_of),
        incidents,
    };
    Ok(VersionStatus {
        root,
        posture: posture::assess(&evidence),
        evidence,
        gate_detail: clearance.detail,
        recorded,
        files,
    })
}

pub(crate) fn score_badge(p: &Posture) -> Markup {
    html! { span class={"score " (posture::tone(p.score).class())} title="posture score" { (p.score) } }
}

pub(crate) fn reasons(p: &Posture) -> Markup {
    html! {
        @if p.reasons.is_empty() {
            span.ok { "nothing lowers it" }
        } @else {
            ul.reasons {
                @for r in &p.reasons { li { "−" (r.points) " " (r.text) } }
            }
        }
    }
}

/// The evidence columns of a version as badges.
pub(crate) fn evidence_badges(e: &posture::Evidence) -> Markup {
    html! {
        @if e.signed { (badge(Tone::Ok, "signed")) } @else { (badge(Tone::Bad, "unsigned")) }
        " "
        @match e.scan_worst.as_deref() {
            None => (badge(Tone::Warn, "not scanned")),
            Some("NONE") => (badge(Tone::Ok, "scan clean")),
            Some(w @ ("CRITICAL" | "HIGH")) => (badge(Tone::Bad, &format!("scan {w}"))),
            Some(w) => (badge(Tone::Warn, &format!("scan {w}"))),
        }
        " "
        @match e.gate {
            None => (badge(Tone::Warn, "no gate")),
            Some(true) => (badge(Tone::Ok, "gate passed")),
            Some(false) => (badge(Tone::Bad, "gate failed")),
        }
        " "
        @match &e.redteam {
            None => (badge(Tone::Muted, "not red-teamed")),
            Some(r) => (badge(
                if r.worst_robust_accuracy.is_some_and(|a| a < 0.5) { Tone::Warn } else { Tone::Ok },
                &format!("red team {}", r.worst_robust_accuracy.map(num).unwrap_or("–".into())),
            )),
        }
        @if e.quarantine.is_some() { " " (badge(Tone::Bad, "quarantined")) }
        @if !e.incidents.is_empty() { " " (badge(Tone::Bad, &format!("{} incident(s)", e.incidents.len()))) }
    }
}

/// GET /ui/models — registered models (MLflow's filter syntax), 50 a page.
pub async fn list(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let filter = p.opt_str("filter")?.filter(|f| !f.trim().is_empty());
    let token = p.opt_str("page_token")?;
    let per_page = super::page_size(&p)?;
    let found = s
        .meta
        .search_registered_models(
            filter.as_deref(),
            &["name ASC".to_owned()],
            Some(per_page),
            token.as_deref(),
        )
        .await?;
    let mut rows = Vec::new();
    for m in found.items {
        if model_permission(&s, &m.name).await? >= Permission::Read {
            rows.push(m);
        }
    }
    let f = filter.clone().unwrap_or_default();
    let next = found
        .next_page_token
        .map(|t| format!("/ui/models{}", query(&[("filter", &f), ("page_token", &t)])));
    let body = html! {
        form.filter method="get" action="/ui/models" role="search" {
            label { "Filter (MLflow syntax)" input.wide type="search" name="filter" value=(f) placeholder="name LIKE '%cancer%'" data-search; }
            button type="submit" { "Search" }
        }
        div.wrap { table {
            thead { tr { th { "Model" } th { "Aliases" } th { "Latest versions" } th { "Updated" } } }
            tbody {
                @for m in &rows {
                    tr {
                        td { a href=(model_href(&m.name)) { (m.name) } }
                        td { @for a in &m.aliases { (badge(Tone::Muted, &format!("{}: v{}", a.alias, a.version))) " " } }
                        td { @for v in &m.latest_versions { a href=(version_href(&m.name, &v.version)) { "v" (v.version) } " (" (v.current_stage) ") " } }
                        td { (time(m.last_updated_timestamp)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="4" { "No registered models match." } } }
            }
        } }
        (pager(None, next.as_deref()))
    };
    let c = chrome(&s, &headers);
    Ok(page_html(Page::new("Models", Nav::Models).render(&c, body)))
}

/// GET /ui/model?name= — one model: aliases, versions with their evidence and score.
pub async fn model(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let name = p.str("name")?;
    let rm = s.meta.get_registered_model(&name).await?;
    let token = p.opt_str("page_token")?;
    let per_page = super::page_size(&p)?.min(100);
    let versions = s
        .meta
        .search_model_versions(
            Some(&format!("name = {}", quoted(&name)?)),
            &["version_number DESC".to_owned()],
            Some(per_page),
            token.as_deref(),
        )
        .await?;
    let mut rows = Vec::new();
    for mv in versions.items {
        let st = status(&s, &mv).await?;
        rows.push((mv, st));
    }
    let can_deploy = model_permission(&s, &name).await? >= Permission::Deploy;
    let next = versions
        .next_page_token
        .map(|t| format!("/ui/model{}", query(&[("name", &name), ("page_token", &t)])));
    let body = html! {
        @if let Some(d) = rm.description.as_deref().filter(|d| !d.is_empty()) { p { (d) } }
        p {
            a href={"/ui/deployments/" (encode(&name))} { "Deployment and monitoring" }
        }
        div.wrap { table {
            thead { tr { th { "Version" } th { "Aliases / stage" } th { "Evidence" } th.n { "Score" } th { "Registered" } @if can_deploy { th { "Actions" } } } }
            tbody {
                @for (mv, st) in &rows {
                    tr {
                        td { a href=(version_href(&name, &mv.version)) { "v" (mv.version) } }
                        td { @for a in &mv.aliases { (badge(Tone::Muted, a)) " " } (mv.current_stage) }
                        td { (evidence_badges(&st.evidence)) }
                        td.n { (score_badge(&st.posture)) }
                        td { (time(mv.creation_timestamp)) }
                        @if can_deploy {
                            td { a href=(confirm_href(&name, "stable", &mv.version)) { "Deploy…" } }
                        }
                    }
                }
            }
        } }
        (pager(None, next.as_deref()))
    };
    let c = chrome(&s, &headers);
    let title = format!("Model {name}");
    Ok(page_html(
        Page::new(&title, Nav::Models)
            .crumb("Models", "/ui/models")
            .render(&c, body),
    ))
}

pub(crate) fn confirm_href(model: &str, action: &str, version: &str) -> String {
    format!(
        "/ui/deployments/{}/confirm{}",
        encode(model),
        query(&[("action", action), ("version", version)])
    )
}

fn finding_rows(e: &Evidence) -> Vec<Value> {
    e.body["findings"].as_array().cloned().unwrap_or_default()
}

/// The red-team metrics as robustness curves: accuracy by budget, one line per attack.
fn robustness(e: &Evidence) -> Vec<Series> {
    let mut by_attack: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    if let Some(m) = e.body["metrics"].as_object() {
        for (k, v) in m {
            // redteam.<attack>.eps_<budget>.robust_accuracy, the budget with _ for the point
            let parts: Vec<&str> = k.split('.').collect();
            if let ["redteam", attack, eps, "robust_accuracy"] = parts.as_slice()
                && let Some(b) = eps.strip_prefix("eps_")
                && let Ok(x) = b.replacen('_', ".", 1).parse::<f64>()
                && let Some(y) = v.as_f64()
            {
                by_attack
                    .entry((*attack).to_owned())
                    .or_default()
                    .push((x, y));
            }
        }
    }
    by_attack
        .into_iter()
        .map(|(name, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name, points }
        })
        .collect()
}

/// GET /ui/model-version?name=&version= — one version's evidence.
pub async fn version(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    let mv = s.meta.get_model_version(&name, &version).await?;
    let st = status(&s, &mv).await?;
    let can_deploy = model_permission(&s, &name).await? >= Permission::Deploy;
    let signature = newest(&st.recorded, SIGNATURE);
    let provenance = newest(&st.recorded, PROVENANCE);
    let decision = newest(&st.recorded, GATE);
    let rules = decision.map(|d| gate::decision_rules(&s.attestor, d));
    let redteam = newest(&st.recorded, REDTEAM);
    let bom = format!(
        "/ui/model-version/bom{}",
        query(&[("name", &name), ("version", &version)])
    );
    let body = html! {
        div.grid {
            div.card {
                h2 { "Posture " (score_badge(&st.posture)) }
                (reasons(&st.posture))
                p { (evidence_badges(&st.evidence)) }
            }
            div.card {
                (facts([
                    ("Status", html! { (mv.status) @if let Some(m) = &mv.status_message { " — " (m) } }),
                    ("Stage", html! { (mv.current_stage) }),
                    ("Aliases", html! { @for a in &mv.aliases { (badge(Tone::Muted, a)) " " } }),
                    ("Source", html! { code { (mv.source) } }),
                    ("Training run", html! { @if mv.run_id.is_empty() { "–" } @else { a href={"/ui/run?run_id=" (encode(&mv.run_id))} { code { (mv.run_id) } } } }),
                    ("Root digest", html! { @match &st.root { Some(r) => code { (r.to_string()) }, None => "none recorded" } }),
                    ("Registered", html! { (time(mv.creation_timestamp)) " by " (mv.user_id.as_deref().unwrap_or("?")) }),
                ]))
                p { a.button.secondary href=(bom) download { "Download ML-BOM (CycloneDX)" } }
                @if can_deploy {
                    p {
                        a.button href=(confirm_href(&name, "stable", &version)) { "Deploy as stable…" } " "
                        a.button.secondary href=(confirm_href(&name, "canary", &version)) { "Deploy as canary…" }
                    }
                }
            }
        }
        h2 { "Scan findings" }
        @if let Some(u) = &st.files.unavailable { p.warn { (u) } }
        @if let Some(q) = &st.files.quarantine { div.error { "Quarantined: " (q) } }
        div.wrap { table {
            thead { tr { th { "File" } th.n { "Size" } th { "Worst" } th { "Findings" } } }
            tbody {
                @for f in &st.files.files {
                    tr {
                        td { code { (f.path) } }
                        td.n { (bytes(f.size)) }
                        td { @match &f.scan { Some(sc) => (sc.worst.clone().unwrap_or_else(|| "NONE".into())), None => (badge(Tone::Warn, "not scanned")) } }
                        td {
                            @if let Some(sc) = &f.scan {
                                @let found = finding_rows(sc);
                                @if found.is_empty() { span.ok { "none" } }
                                @for x in found.iter().take(20) {
                                    div { strong { (x["severity"].as_str().unwrap_or("?")) } " " code { (x["rule"].as_str().unwrap_or("")) } " — " (clip(x["message"].as_str().unwrap_or(""), 200)) }
                                }
                                @if found.len() > 20 { div.muted { "… " (found.len() - 20) " more" } }
                            }
                            @if f.review.is_some() { (badge(Tone::Muted, "reviewed")) }
                        }
                    }
                }
            }
        } }
        h2 { "Signature and provenance" }
        div.card {
            (facts([
                ("Signature", html! { @match signature { Some(e) => { (badge(Tone::Ok, "recorded")) " by " (e.created_by) " at " (time(e.created_time)) " (" (e.tool) ")" }, None => (badge(Tone::Bad, "none")) } }),
                ("Provenance", html! { @match provenance { Some(e) => { (badge(Tone::Ok, "recorded")) " SLSA v1, " (time(e.created_time)) }, None => (badge(Tone::Warn, "none")) } }),
            ]))
            p.muted { "Verify end to end (re-hashing every file): " code { "bastion attest verify models:/" (name) "/" (version) } }
        }
        h2 { "Gate decision" }
        div.card {
            p { @match st.evidence.gate { Some(true) => (badge(Tone::Ok, "passed")), Some(false) => (badge(Tone::Bad, "refused")), None => (badge(Tone::Warn, "none")) } " " (st.gate_detail) }
            @match &rules {
                Some(Ok(rules)) => {
                    table {
                        thead { tr { th { "Rule" } th { "Check" } th { "Value" } th { "Verdict" } th { "Level" } } }
                        tbody {
                            @for r in rules {
                                tr {
                                    td { code { (r["id"].as_str().unwrap_or("")) } }
                                    td { code { (r["check"].as_str().unwrap_or("")) } }
                                    td { (value_text(&r["value"])) }
                                    td { @if r["ok"] == Value::Bool(true) { (badge(Tone::Ok, r["verdict"].as_str().unwrap_or("pass"))) } @else { (badge(Tone::Bad, r["verdict"].as_str().unwrap_or("fail"))) } }
                                    td { (r["level"].as_str().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
                Some(Err(why)) => { div.error { "The recorded decision does not verify: " (why) } }
                None => {}
            }
        }
        h2 { "Red team and privacy" }
        @match redteam {
            None => { p.muted { "No red-team campaign is recorded on this digest (" code { "bastion redteam" } ")." } }
            Some(e) => {
                div.grid {
                    div.card {
                        (chart::lines("Accuracy under attack", "budget ε", "robust accuracy", &robustness(e), None))
                    }
                    div.card {
                        table {
                            thead { tr { th { "Metric" } th.n { "Value" } } }
                            tbody {
                                @if let Some(m) = e.body["metrics"].as_object() {
                                    @for (k, v) in m {
                                        @if !k.contains(".eps_") {
                                            tr { td { code { (k) } } td.n { (value_text(v)) } }
                                        }
                                    }
                                }
                            }
                        }
                        p.muted { "Campaign run " @if let Some(r) = e.body["run_id"].as_str() { a href={"/ui/run?run_id=" (encode(r))} { code { (r) } } } " on " (e.body["dataset"].as_str().unwrap_or("?")) ", " (time(e.created_time)) }
                    }
                }
            }
        }
    };
    let c = chrome(&s, &headers);
    let title = format!("{name} v{version}");
    Ok(page_html(
        Page::new(&title, Nav::Models)
            .crumb("Models", "/ui/models")
            .crumb(name.clone(), model_href(&name))
            .render(&c, body),
    ))
}

pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Number(n) => n.as_f64().map(num).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        other => clip(&other.to_string(), 200),
    }
}

/// GET /ui/model-version/bom?name=&version= — the version's ML-BOM as a download.
pub async fn bom(s: Scoped, p: Params) -> ApiResult<Response> {
    let name = p.str("name")?;
    let version = p.str("version")?;
    let bom = bastion_evidence::bom::model_version_bom(&s.meta, &name, &version).await?;
    let file = format!(
        "attachment; filename=\"{}-v{}.cdx.json\"",
        name.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_"
        ),
        version.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    Ok((
        [
            (CONTENT_TYPE, "application/vnd.cyclonedx+json".to_owned()),
            (CONTENT_DISPOSITION, file),
        ],
        bom.to_json().to_string(),
    )
        .into_response())
}
