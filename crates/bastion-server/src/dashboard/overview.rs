//! The overview: every model the caller may read with the versions that matter (those with
//! an alias or a stage, else the newest), each with its evidence and posture score and the
//! reasons that lower it; the overall score; open incidents; recent audit entries.

use axum::http::HeaderMap;
use axum::response::Html;
use bastion_auth::{Capability, Permission};
use bastion_store::meta::{AuditQuery, IncidentQuery};
use bastion_web::fmt::{clip, time};
use bastion_web::html;
use bastion_web::layout::{Nav, Page, Tone, badge, encode};
use bastion_web::posture;

use super::models::{
    evidence_badges, model_href, quoted, reasons, score_badge, status, version_href,
};
use super::{chrome, model_permission, page_html};
use crate::error::ApiResult;
use crate::state::Scoped;

/// Models shown on the overview (the Models section lists them all).
const MODELS_SHOWN: i64 = 100;

fn stage_rank(aliases: &[String], stage: &str) -> u8 {
    if aliases.iter().any(|a| a == "production") || stage == "Production" {
        0
    } else if aliases.iter().any(|a| a == "staging") || stage == "Staging" {
        1
    } else if !aliases.is_empty() {
        2
    } else {
        3
    }
}

pub async fn page(s: Scoped, headers: HeaderMap) -> ApiResult<Html<String>> {
    let models = s
        .meta
        .search_registered_models(None, &["name ASC".to_owned()], Some(MODELS_SHOWN), None)
        .await?;
    let mut rows = Vec::new();
    for m in models.items {
        if model_permission(&s, &m.name).await? < Permission::Read {
            continue;
        }
        let versions = s
            .meta
            .search_model_versions(
                Some(&format!("name = {}", quoted(&m.name)?)),
                &["version_number DESC".to_owned()],
                Some(200),
                None,
            )
            .await?;
        let mut shown: Vec<_> = versions
            .items
            .iter()
            .filter(|v| {
                !v.aliases.is_empty()
                    || (v.current_stage != "None" && v.current_stage != "Archived")
            })
            .cloned()
            .collect();
        if shown.is_empty()
            && let Some(newest) = versions.items.first()
        {
            shown.push(newest.clone());
        }
        for mv in shown {
            let st = status(&s, &mv).await?;
            rows.push((stage_rank(&mv.aliases, &mv.current_stage), mv, st));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.name.cmp(&b.1.name)));
    let scores: Vec<u32> = rows.iter().map(|(_, _, st)| st.posture.score).collect();
    let overall = posture::overall(&scores);
    let in_production = rows.iter().filter(|r| r.0 == 0).count();
    let mut all_reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, _, st) in &rows {
        for r in &st.posture.reasons {
            // "3 open incident(s)" and the like group by their wording without the count.
            let key = r
                .text
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
                .to_owned();
            *all_reasons.entry(key).or_default() += 1;
        }
    }

    let q = IncidentQuery {
        status: None,
        model_name: None,
        before_id: None,
        limit: 50,
    };
    let mut incidents = Vec::new();
    for i in s.meta.list_incidents(&q).await? {
        if i.status != "resolved" && model_permission(&s, &i.model_name).await? >= Permission::Read
        {
            incidents.push(i);
        }
        if incidents.len() == 10 {
            break;
        }
    }
    let audit = if s.principal.has(Capability::ReadAudit) {
        let size = s.meta.audit_size().await?;
        let q = AuditQuery {
            actor: None,
            resource: None,
            since_ms: None,
            until_ms: None,
            after_seq: size.checked_sub(11),
            limit: 10,
        };
        let mut e = s.meta.audit_entries(&q).await?;
        e.reverse();
        Some(e)
    } else {
        None
    };

    let body = html! {
        div.grid {
            div.card {
                h2 { "Overall posture" }
                @match overall {
                    Some(o) => { div class={"kpi " (posture::tone(o).class())} { (o) " / 100" } p.muted { "mean over " (rows.len()) " model version(s) shown" } }
                    None => { p { "No registered models yet." } }
                }
            }
            div.card {
                h2 { "In production" }
                div.kpi { (in_production) }
                p.muted { (rows.len()) " version(s) with an alias or stage" }
            }
            div.card {
                h2 { "Open incidents" }
                div class={"kpi " @if incidents.is_empty() { "ok" } @else { "bad" }} { (incidents.len()) @if incidents.len() == 10 { "+" } }
                p { a href="/ui/deployments" { "Deployments and monitoring" } }
            }
            div.card {
                h2 { "What lowers the score" }
                @if all_reasons.is_empty() { p.ok { "Nothing." } }
                ul.reasons { @for (r, n) in &all_reasons { li { (r) " — " (n) " version(s)" } } }
            }
        }
        h2 { "Models by stage" }
        div.wrap { table {
            thead { tr { th { "Model" } th { "Version" } th { "Stage / aliases" } th { "Evidence" } th.n { "Score" } th { "Why" } } }
            tbody {
                @for (_, mv, st) in &rows {
                    tr {
                        td { a href=(model_href(&mv.name)) { (mv.name) } }
                        td { a href=(version_href(&mv.name, &mv.version)) { "v" (mv.version) } }
                        td { @for a in &mv.aliases { (badge(if a == "production" { Tone::Ok } else { Tone::Muted }, a)) " " } (mv.current_stage) }
                        td { (evidence_badges(&st.evidence)) }
                        td.n { (score_badge(&st.posture)) }
                        td { (reasons(&st.posture)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="6" { "No registered models." } } }
            }
        } }
        div.grid {
            div {
                h2 { "Recent incidents" }
                table {
                    thead { tr { th { "#" } th { "Model" } th { "Rule" } th { "Severity" } th { "Status" } th { "Opened" } } }
                    tbody {
                        @for i in &incidents {
                            tr {
                                td { a href={"/ui/deployments/" (encode(&i.model_name)) "#incident-" (i.id)} { (i.id) } }
                                td { (i.model_name) " v" (i.version) }
                                td { code { (i.rule) } }
                                td { (super::deployments::severity_badge(&i.severity)) }
                                td { (i.status) }
                                td { (time(i.opened_time)) }
                            }
                        }
                        @if incidents.is_empty() { tr { td colspan="6" { "None open." } } }
                    }
                }
            }
            @if let Some(entries) = &audit {
                div {
                    h2 { "Recent audit entries" }
                    table {
                        thead { tr { th { "#" } th { "When" } th { "Who" } th { "Action" } th { "Outcome" } } }
                        tbody {
                            @for e in entries {
                                tr {
                                    td { a href={"/ui/audit?seq=" (e.seq)} { (e.seq) } }
                                    td { (time(e.time_ms)) }
                                    td { (clip(&e.actor, 40)) }
                                    td { code { (e.action) } }
                                    td { (format!("{:?}", e.outcome).to_lowercase()) }
                                }
                            }
                        }
                    }
                    p { a href="/ui/audit" { "The whole log" } }
                }
            }
        }
    };
    let c = chrome(&s, &headers);
    Ok(page_html(
        Page::new("Security posture", Nav::Overview)
            .refresh(60)
            .render(&c, body),
    ))
}
