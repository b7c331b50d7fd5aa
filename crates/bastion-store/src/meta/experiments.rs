//! Experiments.

use bastion_core::limits::{
    self, KeyKind, MAX_EXPERIMENT_NAME_LENGTH, MAX_EXPERIMENT_TAG_VALUE_LENGTH,
};
use bastion_core::model::{Experiment, KeyValue, LifecycleStage, ViewType};
use bastion_core::{Error, ids, time, uri};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::MetaStore;
use super::rows::{self, kv_by_id};
use super::sql::{self, Attr, AttrKind, Bind, KvTable, PageSpec, SearchTarget, Sql};
use super::write::WriteOn;
use crate::error::StoreResult;

pub(crate) const DEFAULT_EXPERIMENT_ID: i64 = 0;

const SEARCH: SearchTarget = SearchTarget {
    what: "experiments",
    attributes: &[
        Attr {
            key: "name",
            column: "e.name",
            kind: AttrKind::Text,
        },
        Attr {
            key: "experiment_id",
            column: "e.experiment_id",
            kind: AttrKind::Number,
        },
        Attr {
            key: "creation_time",
            column: "e.creation_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "last_update_time",
            column: "e.last_update_time",
            kind: AttrKind::Number,
        },
    ],
    metrics: None,
    params: None,
    tags: Some(KvTable {
        table: "experiment_tags",
        join: "x.experiment_id = e.experiment_id",
    }),
    datasets: None,
    ne_includes_missing: false,
};

fn validate_name(name: &str) -> StoreResult<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("Invalid experiment name: '' (it must not be empty)").into());
    }
    limits::validate_length("Experiment name", name, name, MAX_EXPERIMENT_NAME_LENGTH)?;
    Ok(())
}

fn validate_tag(tag: &KeyValue) -> StoreResult<()> {
    limits::validate_key(KeyKind::Tag, &tag.key)?;
    limits::validate_length(
        "Tag value for key",
        &tag.key,
        &tag.value,
        MAX_EXPERIMENT_TAG_VALUE_LENGTH,
    )?;
    Ok(())
}

fn tags_of(owner: &[Bind]) -> rows::KvOwner<'_> {
    rows::KvOwner {
        table: "experiment_tags",
        columns: "experiment_id",
        values: owner,
    }
}

fn from_row(row: &AnyRow, tags: Vec<KeyValue>) -> StoreResult<Experiment> {
    let id: i64 = row.try_get("experiment_id")?;
    Ok(Experiment {
        experiment_id: id.to_string(),
        name: row.try_get("name")?,
        artifact_location: row.try_get("artifact_location")?,
        lifecycle_stage: rows::stage(row, "lifecycle_stage")?,
        last_update_time: row.try_get("last_update_time")?,
        creation_time: row.try_get("creation_time")?,
        tags,
        workspace: "default",
    })
}

const COLUMNS: &str = "e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time, e.last_update_time";

impl MetaStore {
    pub(crate) async fn ensure_default_experiment(&self) -> StoreResult<()> {
        let now = time::now_ms();
        sqlx::query(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, 'Default', $2, 'active', $3, $3) ON CONFLICT DO NOTHING",
        )
        .bind(DEFAULT_EXPERIMENT_ID)
        .bind(uri::proxied(&bastion_core::RelPath::parse("0").map_err(|e| Error::invalid(e.to_string()))?))
        .bind(now)
        .write_on(self)
        .await?;
        Ok(())
    }

    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KeyValue],
    ) -> StoreResult<String> {
        validate_name(name)?;
        for t in tags {
            validate_tag(t)?;
        }
        let location = match artifact_location.filter(|s| !s.is_empty()) {
            Some(loc) => {
                uri::parse("artifact_location", loc)?;
                Some(loc.to_owned())
            }
            None => None,
        };
        let now = time::now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, $2, 'active', $3, $3) ON CONFLICT (name) DO NOTHING RETURNING experiment_id",
        )
        .bind(name)
        .bind(location.clone().unwrap_or_default())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(
                Error::already_exists(format!("Experiment(name={name}) already exists.")).into(),
            );
        };
        let id: i64 = row.try_get("experiment_id")?;
        if location.is_none() {
            sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2")
                .bind(format!("{}/{id}", uri::ARTIFACTS_SCHEME))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        rows::upsert_kv(&mut tx, &tags_of(&[Bind::Int(id)]), tags).await?;
        tx.commit().await?;
        Ok(id.to_string())
    }

    async fn experiment_where(
        &self,
        sql: Sql,
        missing: impl FnOnce() -> Error,
    ) -> StoreResult<Experiment> {
        let row = sql
            .query()
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(missing)?;
        let id: i64 = row.try_get("experiment_id")?;
        let tags = rows::kv_of(&self.read, {
            let mut s = Sql::new("SELECT key, value FROM experiment_tags WHERE experiment_id = ");
            s.bind(id).push(" ORDER BY key");
            s
        })
        .await?;
        from_row(&row, tags)
    }

    pub async fn get_experiment(&self, experiment_id: &str) -> StoreResult<Experiment> {
        let not_found = || {
            Error::not_found(format!(
                "No Experiment with id={} exists",
                limits::truncate(experiment_id, 64)
            ))
        };
        let id = ids::parse_experiment_id(experiment_id).map_err(|_| not_found())?;
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM experiments e WHERE e.experiment_id = "
        ));
        sql.bind(id);
        self.experiment_where(sql, not_found).await
    }

    pub async fn get_experiment_by_name(&self, name: &str) -> StoreResult<Experiment> {
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM experiments e WHERE e.name = "
        ));
        sql.bind(name);
        self.experiment_where(sql, || {
            Error::not_found(format!(
                "Could not find experiment with name '{}'",
                limits::truncate(name, 200)
            ))
        })
        .await
    }

    /// The experiment, which must be active (MLflow's wording on failure).
    pub(crate) async fn active_experiment(&self, experiment_id: &str) -> StoreResult<Experiment> {
        let e = self.get_experiment(experiment_id).await?;
        if e.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid_state(format!(
                "The experiment {} must be in the 'active' state. Current state is deleted.",
                e.experiment_id
            ))
            .into());
        }
        Ok(e)
    }

    pub async fn search_experiments(
        &self,
        filter: Option<&str>,
        order_by: &[String],
        max_results: Option<i64>,
        page_token: Option<&str>,
        view: ViewType,
    ) -> StoreResult<(Vec<Experiment>, Option<String>)> {
        let mut q = Sql::new(&format!(
            "SELECT {COLUMNS} FROM experiments e WHERE e.lifecycle_stage IN "
        ));
        q.bind_list(view.stages().iter().copied());
        let spec = PageSpec {
            filter,
            order_by,
            max_results,
            page_token,
            default_results: 1000,
            max_allowed: limits::MAX_SEARCH_RESULTS,
        };
        let (rows, next) = sql::fetch_page(
            &self.read,
            q,
            &SEARCH,
            spec,
            "e.creation_time DESC, e.experiment_id ASC",
        )
        .await?;
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("experiment_id").map(|i| i.to_string()))
            .collect::<Result<_, _>>()?;
        let mut tags = kv_by_id(
            &self.read,
            "SELECT CAST(experiment_id AS TEXT) AS id, key, value FROM experiment_tags WHERE CAST(experiment_id AS TEXT) IN ",
            " ORDER BY key",
            &ids,
        )
        .await?;
        let out = rows
            .iter()
            .zip(&ids)
            .map(|(r, id)| from_row(r, tags.remove(id).unwrap_or_default()))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((out, next))
    }

    pub async fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> StoreResult<()> {
        validate_name(new_name)?;
        let e = self.get_experiment(experiment_id).await?;
        if e.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid_state("Cannot rename a non-active experiment.").into());
        }
        let clash =
            sqlx::query("SELECT 1 FROM experiments WHERE name = $1 AND experiment_id != $2")
                .bind(new_name)
                .bind(e.experiment_id.parse::<i64>().unwrap_or_default())
                .fetch_optional(&self.read)
                .await?;
        if clash.is_some() {
            return Err(Error::already_exists(format!(
                "Experiment(name={new_name}) already exists."
            ))
            .into());
        }
        sqlx::query(
            "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
        )
        .bind(new_name)
        .bind(time::now_ms())
        .bind(e.experiment_id.parse::<i64>().unwrap_or_default())
        .write_on(self)
        .await?;
        Ok(())
    }

    /// Soft-deletes the experiment and its runs (they come back with it on restore).
    pub async fn delete_experiment(&self, experiment_id: &str) -> StoreResult<()> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Deleted)
            .await
    }

    pub async fn restore_experiment(&self, experiment_id: &str) -> StoreResult<()> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Active)
            .await
    }

    async fn set_experiment_stage(
        &self,
        experiment_id: &str,
        stage: LifecycleStage,
    ) -> StoreResult<()> {
        let e = self.get_experiment(experiment_id).await?;
        let id: i64 = e.experiment_id.parse().unwrap_or_default();
        if stage == LifecycleStage::Active && e.lifecycle_stage == LifecycleStage::Active {
            return Err(
                Error::invalid_state(format!("Cannot restore an active experiment {id}")).into(),
            );
        }
        let now = time::now_ms();
        let (from, deleted_time) = match stage {
            LifecycleStage::Deleted => ("active", Some(now)),
            LifecycleStage::Active => ("deleted", None),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3")
            .bind(stage.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE experiment_id = $3 AND lifecycle_stage = $4")
            .bind(stage.as_str())
            .bind(deleted_time)
            .bind(id)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_experiment_tag(&self, experiment_id: &str, tag: &KeyValue) -> StoreResult<()> {
        validate_tag(tag)?;
        let e = self.active_experiment(experiment_id).await?;
        let id = e.experiment_id.parse::<i64>().unwrap_or_default();
        let mut tx = self.begin_write().await?;
        rows::upsert_kv(
            &mut tx,
            &tags_of(&[Bind::Int(id)]),
            std::slice::from_ref(tag),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> StoreResult<()> {
        let e = self.active_experiment(experiment_id).await?;
        let done = sqlx::query("DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2")
            .bind(e.experiment_id.parse::<i64>().unwrap_or_default())
            .bind(key)
            .write_on(self)
            .await?;
        rows::deleted_one(done, || {
            format!(
                "No tag with name: {} in experiment with id {}",
                limits::truncate(key, 64),
                e.experiment_id
            )
        })?;
        Ok(())
    }
}
