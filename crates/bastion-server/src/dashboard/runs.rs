//! Experiments and runs: the experiment list; an experiment's runs filtered and sorted with
//! MLflow's search syntax, paginated; a run's parameters, metric charts, tags, artifacts
//! (browsed by folder, downloaded through the artifact API) and lineage (dataset → run →
//! model versions); several runs compared with their metrics overlaid.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::HeaderMap;
use axum::response::Html;
use bastion_auth::Permission;
use bastion_core::model::{Run, ViewType};
use bastion_core::uri::{self, ArtifactUri};
use bastion_core::{Error, RelPath};
use bastion_store::meta::SearchRequest;
use bastion_web::chart::{self, Series};
use bastion_web::fmt::{bytes, clip, duration, num, time};
use bastion_web::layout::{Nav, Page, Tone, badge, encode, facts, pager, query};
use bastion_web::{Markup, html};

use super::models::{quoted, version_href};
use super::{chrome, experiment_permission, page_html};
use crate::error::ApiResult;
use crate::params::Params;
use crate::state::Scoped;

/// Most runs a comparison overlays.
const COMPARE_MAX: usize = 10;
/// Most points of one metric drawn (the history API pages beyond).
const HISTORY_POINTS: i64 = 5000;
/// Metrics charted on a run page (the rest are in the table).
const CHARTS_MAX: usize = 12;

pub(crate) fn run_href(run_id: &str) -> String {
    format!("/ui/run{}", query(&[("run_id", run_id)]))
}

/// GET /ui/experiments — experiments, filtered (MLflow syntax) and paginated.
pub async fn experiments(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let filter = p.opt_str("filter")?.filter(|f| !f.trim().is_empty());
    let token = p.opt_str("page_token")?;
    let per_page = super::page_size(&p)?;
    let found = s
        .meta
        .search_experiments(
            filter.as_deref(),
            &["last_update_time DESC".to_owned()],
            Some(per_page),
            token.as_deref(),
            ViewType::ActiveOnly,
        )
        .await?;
    let (found, next_token) = found;
    let mut rows = Vec::new();
    for e in found {
        if experiment_permission(&s, &e.experiment_id).await? >= Permission::Read {
            rows.push(e);
        }
    }
    let f = filter.clone().unwrap_or_default();
    let next = next_token.map(|t| {
        format!(
            "/ui/experiments{}",
            query(&[("filter", &f), ("page_token", &t)])
        )
    });
    let body = html! {
        form.filter method="get" action="/ui/experiments" role="search" {
            label { "Filter (MLflow syntax)" input.wide type="search" name="filter" value=(f) placeholder="name LIKE 'quick%'" data-search; }
            button type="submit" { "Search" }
        }
        div.wrap { table {
            thead { tr { th { "Experiment" } th { "Id" } th { "Updated" } th { "Created" } } }
            tbody {
                @for e in &rows {
                    tr {
                        td { a href={"/ui/runs" (query(&[("experiment_id", &e.experiment_id)]))} { (e.name) } }
                        td { (e.experiment_id) }
                        td { (time(e.last_update_time)) }
                        td { (time(e.creation_time)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="4" { "No experiments match." } } }
            }
        } }
        (pager(None, next.as_deref()))
    };
    let c = chrome(&s, &headers);
    Ok(page_html(
        Page::new("Experiments", Nav::Experiments).render(&c, body),
    ))
}

/// The sort choices offered (any `order_by` the API takes also works in the URL).
const SORTS: [(&str, &str); 5] = [
    ("attributes.start_time DESC", "newest first"),
    ("attributes.start_time ASC", "oldest first"),
    ("attributes.run_name ASC", "name"),
    ("attributes.status ASC", "status"),
    ("attributes.end_time DESC", "finished last"),
];

/// GET /ui/runs?experiment_id=&filter=&order_by=&page_token= — one experiment's runs.
pub async fn runs(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let experiment_id = p.str("experiment_id")?;
    let exp = s.meta.get_experiment(&experiment_id).await?;
    let filter = p.opt_str("filter")?.filter(|f| !f.trim().is_empty());
    let order = p
        .opt_str("order_by")?
        .filter(|o| !o.trim().is_empty())
        .unwrap_or_else(|| SORTS[0].0.to_owned());
    let token = p.opt_str("page_token")?;
    let per_page = super::page_size(&p)?;
    let page = s
        .meta
        .search_runs(&SearchRequest {
            experiment_ids: vec![experiment_id.clone()],
            filter: filter.clone(),
            order_by: vec![order.clone()],
            max_results: Some(per_page),
            page_token: token,
            view: ViewType::ActiveOnly,
        })
        .await?;
    // The columns: the metrics and parameters the runs on this page have (first 8 each).
    let metric_keys: BTreeSet<&str> = page
        .items
        .iter()
        .flat_map(|r| r.data.metrics.iter().map(|m| m.key.as_str()))
        .collect();
    let param_keys: BTreeSet<&str> = page
        .items
        .iter()
        .flat_map(|r| r.data.params.iter().map(|m| m.key.as_str()))
        .collect();
    let metric_keys: Vec<&str> = metric_keys.into_iter().take(8).collect();
    let param_keys: Vec<&str> = param_keys.into_iter().take(6).collect();
    let f = filter.clone().unwrap_or_default();
    let per = per_page.to_string();
    let next = page.next_page_token.map(|t| {
        format!(
            "/ui/runs{}",
            query(&[
                ("experiment_id", &experiment_id),
                ("filter", &f),
                ("order_by", &order),
                ("per_page", &per),
                ("page_token", &t)
            ])
        )
    });
    let body = html! {
        form.filter method="get" action="/ui/runs" role="search" {
            input type="hidden" name="experiment_id" value=(experiment_id);
            label { "Filter (MLflow syntax)" input.wide type="search" name="filter" value=(f) placeholder="metrics.test_roc_auc > 0.9 and params.model = 'gbdt'" data-search; }
            label { "Sort"
                select name="order_by" {
                    @for (v, label) in SORTS { option value=(v) selected[v == order] { (label) } }
                    @if !SORTS.iter().any(|(v, _)| *v == order) { option value=(order) selected { (order) } }
                }
            }
            label { "Per page" input type="number" name="per_page" min="10" max="500" value=(per_page); }
            button type="submit" { "Apply" }
        }
        form method="get" action="/ui/compare" {
            div.wrap { table {
                thead { tr {
                    th { span.muted { "Compare" } }
                    th { "Run" } th { "Status" } th { "Started" } th { "Duration" }
                    @for k in &param_keys { th { (k) } }
                    @for k in &metric_keys { th.n { (k) } }
                } }
                tbody {
                    @for r in &page.items {
                        @let metrics: BTreeMap<&str, f64> = r.data.metrics.iter().map(|m| (m.key.as_str(), m.value.0)).collect();
                        @let params: BTreeMap<&str, &str> = r.data.params.iter().map(|m| (m.key.as_str(), m.value.as_str())).collect();
                        tr {
                            td { input type="checkbox" name="run_id" value=(r.info.run_id) aria-label={"compare " (r.info.run_name)}; }
                            td { a href=(run_href(&r.info.run_id)) { (if r.info.run_name.is_empty() { &r.info.run_id } else { &r.info.run_name }) } }
                            td { (status_badge(r)) }
                            td { (time(r.info.start_time)) }
                            td { @if let Some(e) = r.info.end_time { (duration(e - r.info.start_time)) } }
                            @for k in &param_keys { td { (clip(params.get(k).copied().unwrap_or(""), 24)) } }
                            @for k in &metric_keys { td.n { @if let Some(v) = metrics.get(k) { (num(*v)) } } }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan=(5 + param_keys.len() + metric_keys.len()) { "No runs match." } } }
                }
            } }
            p { button type="submit" data-compare { "Compare selected runs" } }
        }
        (pager(None, next.as_deref()))
    };
    let c = chrome(&s, &headers);
    let title = format!("Runs of {}", exp.name);
    Ok(page_html(
        Page::new(&title, Nav::Experiments)
            .crumb("Experiments", "/ui/experiments")
            .render(&c, body),
    ))
}

fn status_badge(r: &Run) -> Markup {
    let st = r.info.status.as_str();
    let tone = match st {
        "FINISHED" => Tone::Ok,
        "FAILED" | "KILLED" => Tone::Bad,
        _ => Tone::Warn,
    };
    badge(tone, st)
}

/// A run's metric histories, each as (step, value) points.
async fn histories(
    s: &Scoped,
    run: &Run,
    keys: &[&str],
) -> ApiResult<BTreeMap<String, Vec<(f64, f64)>>> {
    let mut out = BTreeMap::new();
    for k in keys {
        let (points, _) = s
            .meta
            .metric_history(&run.info.run_id, k, Some(HISTORY_POINTS), None)
            .await?;
        out.insert(
            (*k).to_owned(),
            points.iter().map(|m| (m.step as f64, m.value.0)).collect(),
        );
    }
    Ok(out)
}

/// The run's artifact folder in the server's store, when it has one there.
fn artifact_root(run: &Run) -> Option<RelPath> {
    match uri::parse("artifact_uri", &run.info.artifact_uri) {
        Ok(ArtifactUri::Proxied(p)) => Some(p),
        _ => None,
    }
}

/// GET /ui/run?run_id=&dir= — one run.
pub async fn run(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let run_id = p.str("run_id")?;
    let run = s.meta.get_run(&run_id).await?;
    let exp = s.meta.get_experiment(&run.info.experiment_id).await?;
    let keys: Vec<&str> = run
        .data
        .metrics
        .iter()
        .map(|m| m.key.as_str())
        .take(CHARTS_MAX)
        .collect();
    let hist = histories(&s, &run, &keys).await?;
    let dir = match p.opt_str("dir")? {
        Some(d) if !d.is_empty() => {
            RelPath::parse(&d).map_err(|e| Error::invalid(format!("dir: {e}")))?
        }
        _ => RelPath::root(),
    };
    let root = artifact_root(&run);
    let listing = match &root {
        Some(r) => Some(
            s.meta
                .list_artifacts(
                    &r.join(&dir)
                        .map_err(|e| Error::invalid(format!("dir: {e}")))?,
                )
                .await?,
        ),
        None => None,
    };
    let produced = s
        .meta
        .search_model_versions(
            Some(&format!("run_id = {}", quoted(&run_id)?)),
            &[],
            Some(100),
            None,
        )
        .await?
        .items;
    let parent = run
        .data
        .tags
        .iter()
        .find(|t| t.key == "mlflow.parentRunId")
        .map(|t| t.value.clone());
    let body = html! {
        div.grid {
            div.card {
                (facts([
                    ("Run id", html! { code { (run.info.run_id) } }),
                    ("Experiment", html! { a href={"/ui/runs" (query(&[("experiment_id", &exp.experiment_id)]))} { (exp.name) } }),
                    ("Status", status_badge(&run)),
                    ("Started", html! { (time(run.info.start_time)) }),
                    ("Duration", html! { @if let Some(e) = run.info.end_time { (duration(e - run.info.start_time)) } @else { "running" } }),
                    ("User", html! { (run.info.user_id) }),
                    ("Parent run", html! { @match &parent { Some(p) => a href=(run_href(p)) { code { (p) } }, None => "–" } }),
                ]))
            }
            div.card {
                h2 { "Lineage" }
                div.lineage {
                    div {
                        @for d in &run.inputs.dataset_inputs {
                            div.node { "dataset " strong { (d.dataset.name) } br; code { (clip(&d.dataset.digest, 24)) }
                                @if let Some((name, _)) = d.dataset.name.split_once('@') { br; a href={"/ui/datasets/" (encode(name))} { "versions" } }
                            }
                        }
                        @if run.inputs.dataset_inputs.is_empty() { div.node.muted { "no dataset logged" } }
                    }
                    span aria-hidden="true" { "→" }
                    div.node { "run " strong { (if run.info.run_name.is_empty() { &run.info.run_id } else { &run.info.run_name }) } }
                    span aria-hidden="true" { "→" }
                    div {
                        @for mv in &produced { div.node { "model " a href=(version_href(&mv.name, &mv.version)) { (mv.name) " v" (mv.version) } } }
                        @if produced.is_empty() { div.node.muted { "no registered model" } }
                    }
                }
            }
        }
        h2 { "Metrics" }
        div.grid {
            @for (k, points) in &hist {
                @if points.len() > 1 {
                    div.card { (chart::lines(k, "step", k, &[Series { name: k.clone(), points: points.clone() }], None)) }
                }
            }
        }
        div.wrap { table {
            thead { tr { th { "Metric" } th.n { "Last value" } th.n { "Step" } } }
            tbody { @for m in &run.data.metrics { tr { td { (m.key) } td.n { (num(m.value.0)) } td.n { (m.step) } } } }
        } }
        div.grid {
            div {
                h2 { "Parameters" }
                table { tbody { @for kv in &run.data.params { tr { td { code { (kv.key) } } td { (clip(&kv.value, 300)) } } } } }
            }
            div {
                h2 { "Tags" }
                table { tbody { @for kv in &run.data.tags { tr { td { code { (kv.key) } } td { (clip(&kv.value, 300)) } } } } }
            }
        }
        h2 { "Artifacts" @if !dir.is_root() { " / " (dir.as_str()) } }
        @match (&root, &listing) {
            (Some(root), Some(entries)) => {
                table {
                    thead { tr { th { "Path" } th.n { "Size" } } }
                    tbody {
                        @if !dir.is_root() {
                            @let up = dir.as_str().rsplit_once('/').map(|(a, _)| a).unwrap_or("");
                            tr { td { a href={"/ui/run" (query(&[("run_id", &run_id), ("dir", up)]))} { "↑ up" } } td {} }
                        }
                        @for a in entries {
                            @let rel = a.path.strip_prefix(root.as_str()).unwrap_or(&a.path).trim_start_matches('/');
                            tr {
                                @if a.is_dir {
                                    td { a href={"/ui/run" (query(&[("run_id", &run_id), ("dir", rel)]))} { (rel) "/" } }
                                    td {}
                                } @else {
                                    td { a href={"/api/2.0/mlflow-artifacts/artifacts/" (a.path.split('/').map(encode).collect::<Vec<_>>().join("/"))} download { (rel) } }
                                    td.n { (a.size.map(bytes).unwrap_or_default()) }
                                }
                            }
                        }
                        @if entries.is_empty() { tr { td colspan="2" { "No artifacts here." } } }
                    }
                }
            }
            _ => { p.muted { "Artifacts are stored outside this server: " code { (run.info.artifact_uri) } } }
        }
    };
    let c = chrome(&s, &headers);
    let title = format!(
        "Run {}",
        if run.info.run_name.is_empty() {
            &run.info.run_id
        } else {
            &run.info.run_name
        }
    );
    Ok(page_html(
        Page::new(&title, Nav::Experiments)
            .crumb("Experiments", "/ui/experiments")
            .crumb(
                exp.name.clone(),
                format!(
                    "/ui/runs{}",
                    query(&[("experiment_id", &exp.experiment_id)])
                ),
            )
            .render(&c, body),
    ))
}

/// GET /ui/compare?run_id=a&run_id=b — runs side by side, metrics overlaid by step.
pub async fn compare(s: Scoped, headers: HeaderMap, p: Params) -> ApiResult<Html<String>> {
    let ids = p.str_list("run_id")?;
    if ids.len() < 2 || ids.len() > COMPARE_MAX {
        return Err(Error::invalid(format!(
            "choose 2 to {COMPARE_MAX} runs to compare, not {}",
            ids.len()
        ))
        .into());
    }
    let mut runs = Vec::with_capacity(ids.len());
    for id in &ids {
        let run = s.meta.get_run(id).await?;
        // The route lets any signed-in caller in; each run needs READ on its experiment.
        if experiment_permission(&s, &run.info.experiment_id).await? < Permission::Read {
            return Err(crate::error::ApiError::new(
                bastion_core::ErrorCode::PermissionDenied,
                format!(
                    "Permission denied: user '{}' lacks READ permission on run {id}",
                    s.principal.name
                ),
            )
            .with_status(axum::http::StatusCode::FORBIDDEN));
        }
        runs.push(run);
    }
    let keys: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.data.metrics.iter().map(|m| m.key.clone()))
        .collect();
    let param_keys: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.data.params.iter().map(|m| m.key.clone()))
        .collect();
    let name = |r: &Run| {
        if r.info.run_name.is_empty() {
            r.info.run_id.clone()
        } else {
            r.info.run_name.clone()
        }
    };
    let mut charts = Vec::new();
    for k in keys.iter().take(CHARTS_MAX) {
        let mut series = Vec::new();
        for r in &runs {
            if r.data.metrics.iter().any(|m| &m.key == k) {
                let (points, _) = s
                    .meta
                    .metric_history(&r.info.run_id, k, Some(HISTORY_POINTS), None)
                    .await?;
                series.push(Series {
                    name: name(r),
                    points: points.iter().map(|m| (m.step as f64, m.value.0)).collect(),
                });
            }
        }
        charts.push((k.clone(), series));
    }
    let body = html! {
        div.wrap { table {
            thead { tr { th { "" } @for r in &runs { th { a href=(run_href(&r.info.run_id)) { (name(r)) } } } } }
            tbody {
                tr { th { "status" } @for r in &runs { td { (status_badge(r)) } } }
                @for k in &param_keys {
                    tr { th { "param " (k) } @for r in &runs { td { (r.data.params.iter().find(|x| &x.key == k).map(|x| clip(&x.value, 40)).unwrap_or_default()) } } }
                }
                @for k in &keys {
                    tr { th { "metric " (k) } @for r in &runs { td.n { (r.data.metrics.iter().find(|x| &x.key == k).map(|x| num(x.value.0)).unwrap_or_default()) } } }
                }
            }
        } }
        h2 { "Metrics overlaid" }
        div.grid {
            @for (k, series) in &charts {
                div.card { (chart::lines(k, "step", k, series, None)) }
            }
        }
    };
    let c = chrome(&s, &headers);
    Ok(page_html(
        Page::new("Compare runs", Nav::Experiments)
            .crumb("Experiments", "/ui/experiments")
            .render(&c, body),
    ))
}
