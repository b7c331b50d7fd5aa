//! The per-route permission table: for every route, what the caller needs. A route missing
//! from [`RULES`] is denied to everyone. `docs/authz-matrix.tsv` spells out the result for
//! every route and role, and a test drives each cell against a running server.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::Method;
use bastion_auth::{Capability, Permission, ResourceKind};
use bastion_store::MetaStore;
use bastion_store::meta::Grant;

use super::Principal;
use crate::error::ApiError;
use crate::params::Params;

/// Where the resource a request acts on is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `experiment_id` (a missing one means the default experiment, "0").
    Experiment,
    /// every id in `experiment_ids`.
    Experiments,
    /// `experiment_name`.
    ExperimentName,
    /// `run_id` / `run_uuid`: the run's experiment.
    Run,
    /// the `{model_id}` path segment: the logged model's experiment.
    LoggedModel,
    /// an artifact path (`{*path}` or the `path` parameter): its first segment, when it is an
    /// experiment id; otherwise the permission every experiment grants.
    ArtifactPath,
    /// `name`: a registered model.
    RegisteredModel,
    /// the `{name}` path segment: a dataset.
    Dataset,
    /// the `{model_name}` path segment: a registered model (inference routes).
    ServedModel,
    /// every resource of a kind (creating one, searching them).
    AllOf(ResourceKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed.
    Public,
    /// Any authenticated caller.
    Authenticated,
    Capability(Capability),
    Resource(Target, Permission),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Method,
    pub path: &'static str,
    /// The audit log's name for the action.
    pub action: &'static str,
    pub access: Access,
    /// Whether the request changes state (and so is always audited).
    pub writes: bool,
}

fn rule(
    method: Method,
    path: &'static str,
    action: &'static str,
    access: Access,
    writes: bool,
) -> Rule {
    Rule {
        method,
        path,
        action,
        access,
        writes,
    }
}

macro_rules! rules {
    ($( $method:ident $path:literal $action:literal $writes:ident => $access:expr ;)*) => {
        vec![$( rule(Method::$method, $path, $action, $access, rules!(@w $writes)) ),*]
    };
    (@w write) => { true };
    (@w read) => { false };
}

use Access::*;
use Permission::*;
use Target::*;

const EXP: ResourceKind = ResourceKind::Experiment;
const MODEL: ResourceKind = ResourceKind::RegisteredModel;
const DATASET: ResourceKind = ResourceKind::Dataset;
const IDENT: Access = Capability(bastion_auth::Capability::ManageIdentities);
const AUDIT: Access = Capability(bastion_auth::Capability::ReadAudit);

/// Every route the server has, and what it needs.
pub static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    rules! {
        GET "/health" "health" read => Public;
        GET "/metrics" "metrics" read => Authenticated;
        GET "/api/bastion/openapi.json" "openapi" read => Public;
        // experiments
        POST "/api/2.0/mlflow/experiments/create" "experiments.create" write => Resource(AllOf(EXP), Edit);
        GET "/api/2.0/mlflow/experiments/get" "experiments.get" read => Resource(Experiment, Read);
        GET "/api/2.0/mlflow/experiments/get-by-name" "experiments.get-by-name" read => Resource(ExperimentName, Read);
        GET "/api/2.0/mlflow/experiments/search" "experiments.search" read => Resource(AllOf(EXP), Read);
        POST "/api/2.0/mlflow/experiments/search" "experiments.search" read => Resource(AllOf(EXP), Read);
        POST "/api/2.0/mlflow/experiments/update" "experiments.update" write => Resource(Experiment, Manage);
        POST "/api/2.0/mlflow/experiments/delete" "experiments.delete" write => Resource(Experiment, Manage);
        POST "/api/2.0/mlflow/experiments/restore" "experiments.restore" write => Resource(Experiment, Manage);
        POST "/api/2.0/mlflow/experiments/set-experiment-tag" "experiments.set-tag" write => Resource(Experiment, Edit);
        POST "/api/2.0/mlflow/experiments/delete-experiment-tag" "experiments.delete-tag" write => Resource(Experiment, Edit);
        // runs
        POST "/api/2.0/mlflow/runs/create" "runs.create" write => Resource(Experiment, Edit);
        GET "/api/2.0/mlflow/runs/get" "runs.get" read => Resource(Run, Read);
        POST "/api/2.0/mlflow/runs/update" "runs.update" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/delete" "runs.delete" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/restore" "runs.restore" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/search" "runs.search" read => Resource(Experiments, Read);
        GET "/api/2.0/mlflow/runs/search" "runs.search" read => Resource(Experiments, Read);
        POST "/api/2.0/mlflow/runs/log-metric" "runs.log-metric" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/log-parameter" "runs.log-parameter" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/log-batch" "runs.log-batch" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/set-tag" "runs.set-tag" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/delete-tag" "runs.delete-tag" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/log-inputs" "runs.log-inputs" write => Resource(Run, Edit);
        POST "/api/2.0/mlflow/runs/outputs" "runs.log-outputs" write => Resource(Run, Edit);
        GET "/api/2.0/mlflow/metrics/get-history" "metrics.get-history" read => Resource(Run, Read);
        GET "/api/2.0/mlflow/artifacts/list" "artifacts.list" read => Resource(Run, Read);
        // registered models
        POST "/api/2.0/mlflow/registered-models/create" "registered-models.create" write => Resource(AllOf(MODEL), Edit);
        GET "/api/2.0/mlflow/registered-models/get" "registered-models.get" read => Resource(RegisteredModel, Read);
        GET "/api/2.0/mlflow/registered-models/search" "registered-models.search" read => Resource(AllOf(MODEL), Read);
        POST "/api/2.0/mlflow/registered-models/rename" "registered-models.rename" write => Resource(RegisteredModel, Manage);
        PATCH "/api/2.0/mlflow/registered-models/update" "registered-models.update" write => Resource(RegisteredModel, Edit);
        DELETE "/api/2.0/mlflow/registered-models/delete" "registered-models.delete" write => Resource(RegisteredModel, Manage);
        POST "/api/2.0/mlflow/registered-models/set-tag" "registered-models.set-tag" write => Resource(RegisteredModel, Edit);
        DELETE "/api/2.0/mlflow/registered-models/delete-tag" "registered-models.delete-tag" write => Resource(RegisteredModel, Edit);
        POST "/api/2.0/mlflow/registered-models/alias" "registered-models.set-alias" write => Resource(RegisteredModel, Deploy);
        DELETE "/api/2.0/mlflow/registered-models/alias" "registered-models.delete-alias" write => Resource(RegisteredModel, Deploy);
        GET "/api/2.0/mlflow/registered-models/alias" "registered-models.get-alias" read => Resource(RegisteredModel, Read);
        POST "/api/2.0/mlflow/registered-models/get-latest-versions" "registered-models.get-latest-versions" read => Resource(RegisteredModel, Read);
        GET "/api/2.0/mlflow/registered-models/get-latest-versions" "registered-models.get-latest-versions" read => Resource(RegisteredModel, Read);
        // model versions
        POST "/api/2.0/mlflow/model-versions/create" "model-versions.create" write => Resource(RegisteredModel, Edit);
        GET "/api/2.0/mlflow/model-versions/get" "model-versions.get" read => Resource(RegisteredModel, Read);
        PATCH "/api/2.0/mlflow/model-versions/update" "model-versions.update" write => Resource(RegisteredModel, Edit);
        DELETE "/api/2.0/mlflow/model-versions/delete" "model-versions.delete" write => Resource(RegisteredModel, Manage);
        GET "/api/2.0/mlflow/model-versions/search" "model-versions.search" read => Resource(AllOf(MODEL), Read);
        POST "/api/2.0/mlflow/model-versions/transition-stage" "model-versions.transition-stage" write => Resource(RegisteredModel, Deploy);
        POST "/api/2.0/mlflow/model-versions/set-tag" "model-versions.set-tag" write => Resource(RegisteredModel, Edit);
        DELETE "/api/2.0/mlflow/model-versions/delete-tag" "model-versions.delete-tag" write => Resource(RegisteredModel, Edit);
        GET "/api/2.0/mlflow/model-versions/get-download-uri" "model-versions.get-download-uri" read => Resource(RegisteredModel, Read);
        // logged models
        POST "/api/2.0/mlflow/logged-models" "logged-models.create" write => Resource(Experiment, Edit);
        POST "/api/2.0/mlflow/logged-models/search" "logged-models.search" read => Resource(Experiments, Read);
        GET "/api/2.0/mlflow/logged-models/{model_id}" "logged-models.get" read => Resource(LoggedModel, Read);
        PATCH "/api/2.0/mlflow/logged-models/{model_id}" "logged-models.finalize" write => Resource(LoggedModel, Edit);
        DELETE "/api/2.0/mlflow/logged-models/{model_id}" "logged-models.delete" write => Resource(LoggedModel, Edit);
        PATCH "/api/2.0/mlflow/logged-models/{model_id}/tags" "logged-models.set-tags" write => Resource(LoggedModel, Edit);
        DELETE "/api/2.0/mlflow/logged-models/{model_id}/tags/{key}" "logged-models.delete-tag" write => Resource(LoggedModel, Edit);
        POST "/api/2.0/mlflow/logged-models/{model_id}/params" "logged-models.log-params" write => Resource(LoggedModel, Edit);
        GET "/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories" "logged-models.list-artifacts" read => Resource(LoggedModel, Read);
        // artifact proxy
        GET "/api/2.0/mlflow-artifacts/artifacts" "artifacts.list" read => Resource(ArtifactPath, Read);
        GET "/api/2.0/mlflow-artifacts/artifacts/{*path}" "artifacts.download" read => Resource(ArtifactPath, Read);
        PUT "/api/2.0/mlflow-artifacts/artifacts/{*path}" "artifacts.upload" write => Resource(ArtifactPath, Edit);
        DELETE "/api/2.0/mlflow-artifacts/artifacts/{*path}" "artifacts.delete" write => Resource(ArtifactPath, Edit);
        GET "/api/3.0/mlflow/server-info" "server-info" read => Authenticated;
        // Bastion's own API
        GET "/api/bastion/v1/whoami" "whoami" read => Authenticated;
        GET "/api/bastion/v1/tokens" "tokens.list-own" read => Authenticated;
        POST "/api/bastion/v1/tokens" "tokens.create-own" write => Authenticated;
        DELETE "/api/bastion/v1/tokens/{token_id}" "tokens.revoke-own" write => Authenticated;
        GET "/api/bastion/v1/users" "users.list" read => IDENT;
        POST "/api/bastion/v1/users" "users.create" write => IDENT;
        GET "/api/bastion/v1/users/{name}" "users.get" read => IDENT;
        PATCH "/api/bastion/v1/users/{name}" "users.update" write => IDENT;
        DELETE "/api/bastion/v1/users/{name}" "users.delete" write => IDENT;
        GET "/api/bastion/v1/users/{name}/tokens" "tokens.list" read => IDENT;
        POST "/api/bastion/v1/users/{name}/tokens" "tokens.create" write => IDENT;
        DELETE "/api/bastion/v1/users/{name}/tokens/{token_id}" "tokens.revoke" write => IDENT;
        GET "/api/bastion/v1/grants" "grants.list" read => IDENT;
        PUT "/api/bastion/v1/grants" "grants.set" write => IDENT;
        DELETE "/api/bastion/v1/grants" "grants.delete" write => IDENT;
        GET "/api/bastion/v1/audit/entries" "audit.entries" read => AUDIT;
        GET "/api/bastion/v1/audit/verify" "audit.verify" read => AUDIT;
        GET "/api/bastion/v1/audit/head" "audit.head" read => AUDIT;
        GET "/api/bastion/v1/audit/inclusion/{seq}" "audit.inclusion-proof" read => AUDIT;
        GET "/api/bastion/v1/audit/consistency" "audit.consistency-proof" read => AUDIT;
        // evidence
        GET "/api/bastion/v1/artifacts/evidence" "evidence.artifact" read => Resource(ArtifactPath, Read);
        GET "/api/bastion/v1/model-versions/evidence" "evidence.model-version" read => Resource(RegisteredModel, Read);
        POST "/api/bastion/v1/model-versions/scan" "evidence.scan-model-version" write => Resource(RegisteredModel, Edit);
        POST "/api/bastion/v1/model-versions/release" "evidence.release-model-version" write => Resource(RegisteredModel, Manage);
        GET "/api/bastion/v1/model-versions/attestations" "attest.model-version" read => Resource(RegisteredModel, Read);
        POST "/api/bastion/v1/model-versions/verify" "attest.verify-model-version" write => Resource(RegisteredModel, Edit);
        POST "/api/bastion/v1/model-versions/gate" "gate.decide" write => Resource(RegisteredModel, Deploy);
        GET "/api/bastion/v1/signing-key" "attest.signing-key" read => Authenticated;
        // datasets
        GET "/api/bastion/v1/datasets" "datasets.list" read => Resource(AllOf(DATASET), Read);
        POST "/api/bastion/v1/datasets/{name}/versions" "datasets.add" write => Resource(Dataset, Edit);
        GET "/api/bastion/v1/datasets/{name}/versions/{version}" "datasets.show" read => Resource(Dataset, Read);
        GET "/api/bastion/v1/datasets/{name}/versions/{version}/parquet" "datasets.get" read => Resource(Dataset, Read);
        POST "/api/bastion/v1/datasets/{name}/versions/{version}/profile" "datasets.profile" write => Resource(Dataset, Edit);
        POST "/api/bastion/v1/datasets/{name}/versions/{version}/validate" "datasets.validate" write => Resource(Dataset, Edit);
        GET "/api/bastion/v1/datasets/{name}/versions/{version}/suggest" "datasets.suggest" read => Resource(Dataset, Read);
        POST "/api/bastion/v1/datasets/{name}/versions/{version}/pii" "datasets.pii" write => Resource(Dataset, Edit);
        GET "/api/bastion/v1/datasets/{name}/versions/{version}/redacted" "datasets.redacted" read => Resource(Dataset, Read);
        POST "/api/bastion/v1/datasets/{name}/versions/{version}/poison" "datasets.poison" write => Resource(Dataset, Edit);
        POST "/api/bastion/v1/datasets/{name}/versions/{version}/diff" "datasets.diff" write => Resource(Dataset, Edit);
        // deployments (route tables, rollouts) and what serving recorded
        GET "/api/bastion/v1/deployments" "deployments.list" read => Authenticated;
        GET "/api/bastion/v1/deployments/{model_name}" "deployments.show" read => Resource(ServedModel, Read);
        POST "/api/bastion/v1/deployments/{model_name}" "deployment.deploy" write => Resource(ServedModel, Deploy);
        POST "/api/bastion/v1/deployments/{model_name}/promote" "deployment.promote" write => Resource(ServedModel, Deploy);
        POST "/api/bastion/v1/deployments/{model_name}/rollback" "deployment.rollback" write => Resource(ServedModel, Deploy);
        GET "/api/bastion/v1/inference-events" "inference.events" read => Resource(RegisteredModel, Read);
        // what monitoring found (the listing is filtered to readable models)
        GET "/api/bastion/v1/incidents" "incidents.list" read => Authenticated;
        GET "/api/bastion/v1/deployments/{model_name}/incidents/{id}" "incidents.show" read => Resource(ServedModel, Read);
        POST "/api/bastion/v1/deployments/{model_name}/incidents/{id}/acknowledge" "incidents.acknowledge" write => Resource(ServedModel, Deploy);
        POST "/api/bastion/v1/deployments/{model_name}/incidents/{id}/resolve" "incidents.resolve" write => Resource(ServedModel, Deploy);
        // delayed labels (the handler checks INVOKE on the model the body names)
        POST "/api/bastion/feedback" "feedback.record" write => Authenticated;
        // inference (Open Inference Protocol); probes are public, as orchestrators call them
        GET "/v2" "inference.server-metadata" read => Authenticated;
        GET "/v2/health/live" "inference.live" read => Public;
        GET "/v2/health/ready" "inference.ready" read => Public;
        GET "/v2/models/{model_name}" "inference.model-metadata" read => Resource(ServedModel, Read);
        GET "/v2/models/{model_name}/ready" "inference.model-ready" read => Resource(ServedModel, Read);
        POST "/v2/models/{model_name}/infer" "inference.infer" read => Resource(ServedModel, Invoke);
        GET "/v2/models/{model_name}/versions/{model_version}" "inference.model-metadata" read => Resource(ServedModel, Read);
        GET "/v2/models/{model_name}/versions/{model_version}/ready" "inference.model-ready" read => Resource(ServedModel, Read);
        POST "/v2/models/{model_name}/versions/{model_version}/infer" "inference.infer" read => Resource(ServedModel, Invoke);
        // the dashboard: pages need what the matching API read needs; its forms carry the
        // session's form token (checked in the auth layer)
        GET "/" "ui.overview" read => Authenticated;
        GET "/login" "ui.login-page" read => Public;
        POST "/login" "ui.login" read => Public;
        POST "/logout" "ui.logout" write => Authenticated;
        GET "/ui/assets/{file}" "ui.asset" read => Public;
        GET "/ui/experiments" "ui.experiments" read => Resource(AllOf(EXP), Read);
        GET "/ui/runs" "ui.runs" read => Resource(Experiment, Read);
        GET "/ui/run" "ui.run" read => Resource(Run, Read);
        GET "/ui/compare" "ui.compare" read => Authenticated;
        GET "/ui/models" "ui.models" read => Resource(AllOf(MODEL), Read);
        GET "/ui/model" "ui.model" read => Resource(RegisteredModel, Read);
        GET "/ui/model-version" "ui.model-version" read => Resource(RegisteredModel, Read);
        GET "/ui/model-version/bom" "ui.model-version-bom" read => Resource(RegisteredModel, Read);
        GET "/ui/datasets" "ui.datasets" read => Resource(AllOf(DATASET), Read);
        GET "/ui/datasets/{name}" "ui.dataset" read => Resource(Dataset, Read);
        POST "/ui/datasets/{name}/diff" "ui.dataset-diff" write => Resource(Dataset, Edit);
        GET "/ui/deployments" "ui.deployments" read => Authenticated;
        GET "/ui/deployments/{model_name}" "ui.deployment" read => Resource(ServedModel, Read);
        GET "/ui/deployments/{model_name}/confirm" "ui.deployment-confirm" read => Resource(ServedModel, Deploy);
        POST "/ui/deployments/{model_name}/change" "ui.deployment-change" write => Resource(ServedModel, Deploy);
        POST "/ui/deployments/{model_name}/incidents/{id}/acknowledge" "ui.incident-acknowledge" write => Resource(ServedModel, Deploy);
        POST "/ui/deployments/{model_name}/incidents/{id}/resolve" "ui.incident-resolve" write => Resource(ServedModel, Deploy);
        GET "/ui/audit" "ui.audit" read => AUDIT;
    }
});

fn path_param(path_params: &HashMap<String, String>, key: &str) -> String {
    path_params.get(key).cloned().unwrap_or_default()
}

static BY_ROUTE: LazyLock<HashMap<(Method, &'static str), &'static Rule>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|r| ((r.method.clone(), r.path), r))
        .collect()
});

/// The rule of a matched route (`path` is the route's template).
pub fn rule_for(method: &Method, path: &str) -> Option<&'static Rule> {
    BY_ROUTE.get(&(method.clone(), path)).copied()
}

/// What an authorized request acts on, as the audit log names it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub resource: String,
}

/// The experiment an artifact path belongs to, when its first segment is one.
pub fn artifact_experiment(path: &str) -> Option<&str> {
    let first = path.trim_start_matches('/').split('/').next()?;
    (!first.is_empty() && first.len() <= 19 && first.bytes().all(|b| b.is_ascii_digit()))
        .then_some(first)
}

/// The artifact path a request names, validated: a traversal attempt stops here, before any
/// permission is looked up or any handler runs.
pub fn artifact_path(
    params: &Params,
    path_params: &HashMap<String, String>,
) -> Result<String, ApiError> {
    let raw = match path_params.get("path") {
        Some(p) => p.clone(),
        None => params.opt_str("path")?.unwrap_or_default(),
    };
    bastion_core::RelPath::parse(&raw).map_err(|e| {
        ApiError::new(
            bastion_core::ErrorCode::InvalidParameterValue,
            format!("Invalid path: {e}"),
        )
        .security_event("path-traversal")
    })?;
    Ok(raw)
}

/// Every grant, by principal, as loaded at a moment.
type GrantSnapshot = (Instant, HashMap<String, Vec<Grant>>);

const GRANTS_TTL: Duration = Duration::from_secs(5);
const OWNER_CACHE_CAPACITY: usize = 100_000;

/// Decides requests against grants and role defaults. Caches the grants (reloaded every few
/// seconds, or at once after a change through this server) and the experiment of each run
/// and logged model (which never changes).
pub struct Authorizer {
    meta: MetaStore,
    grants: RwLock<Option<GrantSnapshot>>,
    owners: Mutex<HashMap<String, String>>,
}

impl Authorizer {
    pub fn new(meta: MetaStore) -> Self {
        Self {
            meta,
            grants: RwLock::new(None),
            owners: Mutex::new(HashMap::new()),
        }
    }

    pub fn invalidate_grants(&self) {
        if let Ok(mut g) = self.grants.write() {
            *g = None;
        }
    }

    async fn grants_of(&self, principals: &[String]) -> Result<Vec<Grant>, ApiError> {
        let fresh = |g: &Option<GrantSnapshot>| {
            g.as_ref()
                .filter(|(at, _)| at.elapsed() < GRANTS_TTL)
                .map(|(_, m)| {
                    principals
                        .iter()
                        .filter_map(|p| m.get(p))
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                })
        };
        if let Some(found) = self.grants.read().ok().and_then(|g| fresh(&g)) {
            return Ok(found);
        }
        let all = self.meta.list_grants(None).await?;
        let mut map: HashMap<String, Vec<Grant>> = HashMap::new();
        for g in all {
            map.entry(g.principal.clone()).or_default().push(g);
        }
        let out = principals
            .iter()
            .filter_map(|p| map.get(p))
            .flatten()
            .cloned()
            .collect();
        if let Ok(mut g) = self.grants.write() {
            *g = Some((Instant::now(), map));
        }
        Ok(out)
    }

    /// The caller's permission on one resource (`*`: on every resource of the kind).
    pub async fn permission(
        &self,
        who: &Principal,
        kind: ResourceKind,
        resource: &str,
    ) -> Result<Permission, ApiError> {
        let mut best = who.role_permission(kind);
        for g in self.grants_of(&who.grant_principals()).await? {
            if g.resource_kind == kind && (g.resource == resource || g.resource == "*") {
                best = best.max(g.permission);
            }
        }
        Ok(best)
    }

    async fn owner(
        &self,
        key: String,
        lookup: impl Future<Output = Result<String, ApiError>>,
    ) -> Result<String, ApiError> {
        if let Some(e) = self.owners.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(e);
        }
        let exp = lookup.await?;
        if let Ok(mut m) = self.owners.lock() {
            if m.len() >= OWNER_CACHE_CAPACITY {
                m.clear();
            }
            m.insert(key, exp.clone());
        }
        Ok(exp)
    }

    /// Resolves the rule's target from the request and checks the caller's permission on it.
    /// `Ok(None)` means refused; the resource named is returned either way for the audit.
    pub async fn decide(
        &self,
        who: &Principal,
        rule: &Rule,
        params: &Params,
        path_params: &HashMap<String, String>,
    ) -> Result<(bool, String), ApiError> {
        let (target, needed) = match rule.access {
            Access::Public | Access::Authenticated => return Ok((true, String::new())),
            Access::Capability(c) => return Ok((who.has(c), String::new())),
            Access::Resource(t, p) => (t, p),
        };
        // The experiments whose permission decides, and the audit's name for the target.
        let (experiments, label): (Vec<String>, Option<String>) = match target {
            Target::Experiment => {
                let id = params.opt_str("experiment_id")?.filter(|s| !s.is_empty());
                (vec![id.unwrap_or_else(|| "0".into())], None)
            }
            Target::Experiments => (params.str_list("experiment_ids")?, None),
            Target::ExperimentName => {
                let name = params.str("experiment_name")?;
                (
                    vec![self.meta.get_experiment_by_name(&name).await?.experiment_id],
                    None,
                )
            }
            Target::Run => {
                let run_id = params.str_any(&["run_id", "run_uuid"])?;
                let meta = self.meta.clone();
                let id = run_id.clone();
                let exp = self
                    .owner(format!("run:{run_id}"), async move {
                        Ok(meta.get_run_info(&id).await?.experiment_id)
                    })
                    .await?;
                (vec![exp], Some(format!("run:{run_id}")))
            }
            Target::LoggedModel => {
                let model_id = path_params.get("model_id").cloned().unwrap_or_default();
                let meta = self.meta.clone();
                let id = model_id.clone();
                let exp = self
                    .owner(format!("logged_model:{model_id}"), async move {
                        Ok(meta.get_logged_model(&id).await?.info.experiment_id)
                    })
                    .await?;
                (vec![exp], Some(format!("logged_model:{model_id}")))
            }
            Target::ArtifactPath => {
                let path = artifact_path(params, path_params)?;
                let exp = artifact_experiment(&path).unwrap_or("*").to_owned();
                (vec![exp], Some(format!("artifact:{path}")))
            }
            Target::RegisteredModel | Target::ServedModel | Target::Dataset => {
                // One named resource: from the `name` parameter, or from the path.
                let (kind, name) = match target {
                    Target::RegisteredModel => (MODEL, params.str("name")?),
                    Target::ServedModel => (MODEL, path_param(path_params, "model_name")),
                    _ => (DATASET, path_param(path_params, "name")),
                };
                let ok = self.permission(who, kind, &name).await? >= needed;
                return Ok((ok, format!("{kind}:{name}")));
            }
            Target::AllOf(kind) => {
                let ok = self.permission(who, kind, "*").await? >= needed;
                return Ok((ok, format!("{kind}:*")));
            }
        };
        let mut ok = true;
        for e in &experiments {
            if self.permission(who, EXP, e).await? < needed {
                ok = false;
                break;
            }
        }
        let resource = label.unwrap_or_else(|| format!("experiment:{}", experiments.join(",")));
        Ok((ok, resource))
    }
}
