//! Datasets: every dataset's newest version; one dataset's versions with the chosen
//! version's profile (histograms and top values), validation results, PII report, poisoning
//! checks, and drift against another version (run here on request, recorded as evidence).

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use bastion_auth::Permission;
use bastion_core::Error;
use bastion_data::drift::{DriftOptions, DriftReport};
use bastion_data::profile::Profile;
use bastion_data::validate::ValidationReport;
use bastion_evidence::datasets::{
    DATA_DRIFT, DATA_PII, DATA_POISON, DATA_PROFILE, DATA_VALIDATION,
};
use bastion_store::meta::Evidence;
use bastion_web::chart;
use bastion_web::fmt::{bytes, clip, num, time};
use bastion_web::layout::{Nav, Page, Tone, badge, csrf_field, encode, facts, pager, query};
use bastion_web::{Markup, html};
use serde_json::Value;

use super::models::{newest, value_text};
use super::{chrome, dataset_permission, page_html};
use crate::error::ApiResult;
use crate::params::Params;
use crate::state::Scoped;

fn dataset_href(name: &str, version: i64) -> String {
    format!(
        "/ui/datasets/{}{}",
        encode(name),
        query(&[("version", &version.to_string())])
    )
}

/// GET /ui/datasets — the newest version of every dataset the caller may read.
pub async fn list(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let filter = p.opt_str("filter")?.unwrap_or_default();
    let mut rows = Vec::new();
    for v in s.meta.list_dataset_versions(None).await? {
        if (filter.is_empty() || v.name.contains(filter.as_str()))
            && dataset_permission(&s, &v.name).await? >= Permission::Read
        {
            rows.push(v);
        }
    }
    let f = filter.clone();
    let page = super::paged(rows, &p, |o| {
        format!(
            "/ui/datasets{}",
            query(&[("filter", &f), ("offset", &o.to_string())])
        )
    })?;
    let rows = page.items;
    let body = html! {
        form.filter method="get" action="/ui/datasets" role="search" {
            label { "Name contains" input type="search" name="filter" value=(filter) data-search; }
            button type="submit" { "Search" }
        }
        div.wrap { table {
            thead { tr { th { "Dataset" } th.n { "Latest" } th.n { "Rows" } th.n { "Size" } th { "Encrypted" } th { "Created" } th { "By" } } }
            tbody {
                @for v in &rows {
                    tr {
                        td { a href=(dataset_href(&v.name, v.version)) { (v.name) } }
                        td.n { "v" (v.version) }
                        td.n { (v.rows) }
                        td.n { (bytes(v.bytes)) }
                        td { @if v.encrypted { (badge(Tone::Ok, "age")) } @else { span.muted { "no" } } }
                        td { (time(v.created_time)) }
                        td { (clip(&v.created_by, 40)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="7" { "No datasets." } } }
            }
        } }
        (pager(page.prev.as_deref(), page.next.as_deref()))
    };
    let c = chrome(&s, &headers);
    Ok(page_html(
        Page::new("Datasets", Nav::Datasets).render(&c, body),
    ))
}

fn profile_section(e: &Evidence) -> Markup {
    let Ok(p) = serde_json::from_value::<Profile>(e.body["result"].clone()) else {
        return html! { p.warn { "The recorded profile could not be read." } };
    };
    html! {
        p.muted { (p.rows) " rows, " (p.columns.len()) " columns, profiled " (time(e.created_time)) }
        div.wrap { table {
            thead { tr { th { "Column" } th { "Type" } th.n { "Nulls" } th.n { "Distinct" } th.n { "Min" } th.n { "Mean" } th.n { "Std" } th.n { "Max" } } }
            tbody {
                @for c in &p.columns {
                    tr {
                        td { (c.schema.name) }
                        td { (format!("{:?}", c.schema.kind).to_lowercase()) @if c.schema.nullable { "?" } }
                        td.n { (c.nulls) " (" (num(c.null_fraction * 100.0)) "%)" }
                        td.n { (c.distinct) @if !c.distinct_exact { "≈" } }
                        @if let Some(n) = &c.numeric {
                            td.n { (num(n.min)) } td.n { (num(n.mean)) } td.n { (num(n.std)) } td.n { (num(n.max)) }
                        } @else { td {} td {} td {} td {} }
                    }
                }
            }
        } }
        div.grid {
            @for c in &p.columns {
                @if let Some(n) = &c.numeric {
                    @let labels: Vec<String> = n.histogram.edges.windows(2).map(|e| format!("[{}, {})", num(e[0]), num(e[1]))).collect();
                    div.card { h2 { (c.schema.name) } (chart::bars(&labels, &[("count", &n.histogram.counts)])) }
                } @else if !c.top.is_empty() {
                    @let labels: Vec<String> = c.top.iter().take(20).map(|t| t.value.clone()).collect();
                    @let counts: Vec<u64> = c.top.iter().take(20).map(|t| t.count).collect();
                    div.card { h2 { (c.schema.name) " (top values)" } (chart::bars(&labels, &[("count", &counts)])) }
                }
            }
        }
    }
}

fn validation_section(e: &Evidence) -> Markup {
    let Ok(v) = serde_json::from_value::<ValidationReport>(e.body["result"]["report"].clone())
    else {
        return html! { p.warn { "The recorded validation could not be read." } };
    };
    html! {
        p { @if v.passed { (badge(Tone::Ok, "passed")) } @else { (badge(Tone::Bad, "failed")) }
            " " (v.checked) " constraints checked, " (v.failed) " failed, " (time(e.created_time)) }
        table {
            thead { tr { th { "Constraint" } th { "Result" } th.n { "Failed rows" } th { "Observed" } th { "Examples" } } }
            tbody {
                @for r in &v.results {
                    tr {
                        td { code { (r.constraint) } br; span.muted { (r.description) } }
                        td { @if r.passed { (badge(Tone::Ok, "pass")) } @else { (badge(Tone::Bad, "fail")) } }
                        td.n { (r.failed_rows) }
                        td { (r.observed.as_ref().map(value_text).unwrap_or_default()) }
                        td { @for x in r.examples.iter().take(3) { div { code { (clip(&serde_json::to_string(x).unwrap_or_default(), 120)) } } } }
                    }
                }
            }
        }
    }
}

fn pii_section(e: &Evidence) -> Markup {
    let r = &e.body["result"];
    let columns = r["columns"].as_array().cloned().unwrap_or_default();
    html! {
        p { (r["pii_columns"].as_u64().unwrap_or(0)) " column(s) hold personal data (" (time(e.created_time)) ")" }
        table {
            thead { tr { th { "Column" } th { "Kind" } th { "Findings (masked examples)" } } }
            tbody {
                @for c in columns.iter().filter(|c| c["findings"].as_array().is_some_and(|f| !f.is_empty())) {
                    tr {
                        td { (c["column"].as_str().unwrap_or("")) @if c["free_text"] == Value::Bool(true) { " " (badge(Tone::Muted, "free text")) } }
                        td { (value_text(&c["column_kind"])) }
                        td { @for f in c["findings"].as_array().into_iter().flatten() {
                            div { strong { (value_text(&f["kind"])) } " × " (value_text(&f["count"]))
                                @for x in f["examples"].as_array().into_iter().flatten().take(3) { " " code { (value_text(x)) } } }
                        } }
                    }
                }
            }
        }
    }
}

fn poison_section(e: &Evidence) -> Markup {
    let r = &e.body["result"]["report"];
    html! {
        p { "Checked " (value_text(&r["checked_rows"])) " of " (value_text(&r["rows"])) " rows (" (time(e.created_time)) ")" }
        @if let Some(c) = r["counts"].as_object() {
            table { tbody { @for (k, v) in c { tr { td { (k) } td.n { (value_text(v)) } } } } }
        }
        @if let Some(o) = r["outliers"].as_array().filter(|o| !o.is_empty()) {
            details { summary { "Outlier rows (" (o.len()) ")" }
                table { thead { tr { th.n { "Row" } th.n { "Score" } } } tbody { @for x in o.iter().take(50) { tr { td.n { (value_text(&x["row"])) } td.n { (value_text(&x["score"])) } } } } } }
        }
        @if let Some(o) = r["label_issues"].as_array().filter(|o| !o.is_empty()) {
            details { summary { "Label-noise candidates (" (o.len()) ")" }
                table { thead { tr { th.n { "Row" } th { "Label" } th { "Suggested" } th.n { "Self-confidence" } } } tbody { @for x in o.iter().take(50) { tr { td.n { (value_text(&x["row"])) } td { (value_text(&x["label"])) } td { (value_text(&x["suggested"])) } td.n { (value_text(&x["self_confidence"])) } } } } } }
        }
    }
}

fn drift_section(e: &Evidence) -> Markup {
    let result = &e.body["result"];
    let Ok(d) = serde_json::from_value::<DriftReport>(result["diff"]["drift"].clone()) else {
        return html! { p.warn { "The recorded drift report could not be read." } };
    };
    html! {
        p { @if d.dataset_drift { (badge(Tone::Bad, "drift")) } @else { (badge(Tone::Ok, "no drift")) }
            " " (d.drifted_columns) " of " (d.columns.len()) " columns drifted (α " (num(d.options.alpha)) "), against " (result["reference"].as_str().unwrap_or("?")) ", " (time(e.created_time)) }
        table {
            thead { tr { th { "Column" } th { "Test" } th.n { "Score" } th.n { "Threshold" } th.n { "p (adjusted)" } th.n { "PSI" } th.n { "JS" } th { "Drift" } } }
            tbody {
                @for c in &d.columns {
                    tr {
                        td { (c.column) }
                        td { (format!("{:?}", c.test)) }
                        td.n { (num(c.score)) }
                        td.n { (num(c.threshold)) }
                        td.n { (c.adjusted_pvalue.map(num).unwrap_or_default()) }
                        td.n { (num(c.psi)) }
                        td.n { (num(c.jensen_shannon)) }
                        td { @if c.drift { (badge(Tone::Bad, "yes")) } @else { span.ok { "no" } } }
                    }
                }
            }
        }
    }
}

/// GET /ui/datasets/{name}?version=K — a dataset's versions and one version's checks.
pub async fn dataset(
    s: Scoped,
    headers: HeaderMap,
    Path(name): Path<String>,
    p: Params,
) -> ApiResult<Html<String>> {
    let versions = s.meta.list_dataset_versions(Some(&name)).await?;
    let Some(latest) = versions.first() else {
        return Err(Error::not_found(format!("dataset '{name}' has no versions")).into());
    };
    let chosen = match p.opt_i64("version")? {
        Some(k) => versions
            .iter()
            .find(|v| v.version == k)
            .ok_or_else(|| Error::not_found(format!("dataset '{name}' has no version {k}")))?,
        None => latest,
    };
    let recorded = s.meta.evidence_for(&chosen.digest).await?;
    let can_edit = dataset_permission(&s, &name).await? >= Permission::Edit;
    let c = chrome(&s, &headers);
    let body = html! {
        div.grid {
            div.card {
                (facts([
                    ("Reference", html! { code { (chosen.reference()) } }),
                    ("Digest", html! { code { (chosen.digest.to_string()) } }),
                    ("Rows", html! { (chosen.rows) }),
                    ("Stored", html! { (bytes(chosen.bytes)) " " (chosen.format) @if chosen.encrypted { " " (badge(Tone::Ok, "encrypted (age)")) } }),
                    ("Source", html! { code { (clip(&chosen.source, 120)) } }),
                    ("Parent", html! { @match chosen.parent_version { Some(p) => a href=(dataset_href(&name, p)) { "v" (p) }, None => "–" } }),
                    ("Created", html! { (time(chosen.created_time)) " by " (chosen.created_by) }),
                ]))
                p { a.button.secondary href={"/api/bastion/v1/datasets/" (encode(&name)) "/versions/" (chosen.version) "/parquet"} download { "Download Parquet" } }
            }
            div.card {
                h2 { "Versions" }
                table {
                    thead { tr { th { "Version" } th.n { "Rows" } th { "Created" } } }
                    tbody {
                        @for v in &versions {
                            tr {
                                td { @if v.version == chosen.version { strong { "v" (v.version) } } @else { a href=(dataset_href(&name, v.version)) { "v" (v.version) } } }
                                td.n { (v.rows) }
                                td { (time(v.created_time)) }
                            }
                        }
                    }
                }
                @if can_edit && versions.len() > 1 {
                    form method="post" action={"/ui/datasets/" (encode(&name)) "/diff"} {
                        (csrf_field(&c))
                        input type="hidden" name="version" value=(chosen.version);
                        label { "Drift of v" (chosen.version) " against "
                            select name="against" {
                                @for v in versions.iter().filter(|v| v.version != chosen.version) { option value=(v.version) { "v" (v.version) } }
                            }
                        }
                        " " button type="submit" { "Measure drift" }
                    }
                }
            }
        }
        h2 { "Profile" }
        @match newest(&recorded, DATA_PROFILE) { Some(e) => (profile_section(e)), None => p.muted { "Not profiled." } }
        h2 { "Validation" }
        @match newest(&recorded, DATA_VALIDATION) { Some(e) => (validation_section(e)), None => p.muted { "Not validated (" code { "bastion data validate" } ")." } }
        h2 { "Personal data" }
        @match newest(&recorded, DATA_PII) { Some(e) => (pii_section(e)), None => p.muted { "Not scanned for personal data." } }
        h2 { "Poisoning and label checks" }
        @match newest(&recorded, DATA_POISON) { Some(e) => (poison_section(e)), None => p.muted { "Not checked (" code { "bastion data poison" } ")." } }
        h2 { "Drift" }
        @match newest(&recorded, DATA_DRIFT) { Some(e) => (drift_section(e)), None => p.muted { "No drift measured for this version." } }
    };
    let title = format!("Dataset {name}");
    Ok(page_html(
        Page::new(&title, Nav::Datasets)
            .crumb("Datasets", "/ui/datasets")
            .render(&c, body),
    ))
}

/// POST /ui/datasets/{name}/diff (version, against) — measures drift of one version against
/// another (recorded as evidence on it), then shows it.
pub async fn diff(s: Scoped, Path(name): Path<String>, p: Params) -> ApiResult<Response> {
    let version = p.str("version")?;
    let against = p.str("against")?;
    let b = s.version(&name, &version).await?;
    let a = s.version(&name, &against).await?;
    s.datasets()
        .diff(&a, &b, DriftOptions::default(), &s.principal.actor())
        .await?;
    Ok(Redirect::to(&dataset_href(&name, b.version)).into_response())
}
