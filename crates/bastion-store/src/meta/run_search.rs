//! `runs/search`: the filter and `order_by` become SQL on both backends; nothing is filtered in
//! memory.

use bastion_core::model::{Run, ViewType};
use bastion_core::{Error, ids, limits};

use super::MetaStore;
use super::runs::{RUN_COLUMNS, run_info};
use super::sql::{self, Attr, AttrKind, KvTable, PageSpec, SearchTarget, Sql};
use crate::error::StoreResult;

const RUNS: SearchTarget = SearchTarget {
    what: "runs",
    attributes: &[
        Attr {
            key: "run_id",
            column: "r.run_uuid",
            kind: AttrKind::Text,
        },
        Attr {
            key: "run_name",
            column: "r.name",
            kind: AttrKind::Text,
        },
        Attr {
            key: "status",
            column: "r.status",
            kind: AttrKind::Text,
        },
        Attr {
            key: "user_id",
            column: "r.user_id",
            kind: AttrKind::Text,
        },
        Attr {
            key: "artifact_uri",
            column: "r.artifact_uri",
            kind: AttrKind::Text,
        },
        Attr {
            key: "lifecycle_stage",
            column: "r.lifecycle_stage",
            kind: AttrKind::Text,
        },
        Attr {
            key: "start_time",
            column: "r.start_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "end_time",
            column: "r.end_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "created",
            column: "r.start_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "Created",
            column: "r.start_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "experiment_id",
            column: "r.experiment_id",
            kind: AttrKind::Number,
        },
    ],
    metrics: Some(KvTable {
        table: "latest_metrics",
        join: "x.run_uuid = r.run_uuid",
    }),
    params: Some(KvTable {
        table: "params",
        join: "x.run_uuid = r.run_uuid",
    }),
    tags: Some(KvTable {
        table: "tags",
        join: "x.run_uuid = r.run_uuid",
    }),
    datasets: Some("i.run_uuid = r.run_uuid"),
    ne_includes_missing: false,
};

#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub experiment_ids: Vec<String>,
    pub filter: Option<String>,
    pub order_by: Vec<String>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
    pub view: ViewType,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

impl MetaStore {
    pub async fn search_runs(&self, req: &SearchRequest) -> StoreResult<Page<Run>> {
        let experiments = req
            .experiment_ids
            .iter()
            .map(|e| ids::parse_experiment_id(e))
            .collect::<Result<Vec<i64>, Error>>()?;
        if experiments.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let mut q = Sql::new(&format!(
            "SELECT {RUN_COLUMNS} FROM runs r WHERE r.experiment_id IN "
        ));
        q.bind_list(experiments);
        q.push(" AND r.lifecycle_stage IN ")
            .bind_list(req.view.stages().iter().copied());
        let spec = PageSpec {
            filter: req.filter.as_deref(),
            order_by: &req.order_by,
            max_results: req.max_results,
            page_token: req.page_token.as_deref(),
            default_results: 1000,
            max_allowed: limits::MAX_SEARCH_RESULTS,
        };
        let (rows, next_page_token) = sql::fetch_page(
            &self.read,
            q,
            &RUNS,
            spec,
            "r.start_time DESC, r.run_uuid ASC",
        )
        .await?;
        let infos = rows.iter().map(run_info).collect::<StoreResult<Vec<_>>>()?;
        let items = self.attach_run_data(infos).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }
}
