//! The model registry: registered models, their versions, tags, stages and aliases.

use std::collections::HashMap;

use bastion_core::limits::{
    self, KeyKind, MAX_DESCRIPTION_LENGTH, MAX_MODEL_NAME_LENGTH, MAX_REGISTRY_TAG_VALUE_LENGTH,
};
use bastion_core::model::{Alias, KeyValue, ModelVersion, RegisteredModel, Stage};
use bastion_core::uri::{self, ArtifactUri};
use bastion_core::{Error, ErrorCode, ids, time};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::MetaStore;
use super::rows;
use super::run_search::Page;
use super::sql::{self, Attr, AttrKind, Bind, KvTable, PageSpec, SearchTarget, Sql};
use super::write::WriteOn;
use crate::error::StoreResult;

const DELETED_STAGE: &str = "Deleted_Internal";

const MODELS: SearchTarget = SearchTarget {
    what: "registered models",
    attributes: &[
        Attr {
            key: "name",
            column: "rm.name",
            kind: AttrKind::Text,
        },
        Attr {
            key: "creation_timestamp",
            column: "rm.creation_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "timestamp",
            column: "rm.last_updated_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "last_updated_timestamp",
            column: "rm.last_updated_time",
            kind: AttrKind::Number,
        },
    ],
    metrics: None,
    params: None,
    tags: Some(KvTable {
        table: "registered_model_tags",
        join: "x.model_pk = rm.id",
    }),
    datasets: None,
    ne_includes_missing: true,
};

const VERSIONS: SearchTarget = SearchTarget {
    what: "model versions",
    attributes: &[
        Attr {
            key: "name",
            column: "rm.name",
            kind: AttrKind::Text,
        },
        Attr {
            key: "version_number",
            column: "mv.version",
            kind: AttrKind::Number,
        },
        Attr {
            key: "run_id",
            column: "mv.run_id",
            kind: AttrKind::Text,
        },
        Attr {
            key: "source_path",
            column: "mv.source",
            kind: AttrKind::Text,
        },
        Attr {
            key: "current_stage",
            column: "mv.current_stage",
            kind: AttrKind::Text,
        },
        Attr {
            key: "creation_timestamp",
            column: "mv.creation_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "timestamp",
            column: "mv.last_updated_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "last_updated_timestamp",
            column: "mv.last_updated_time",
            kind: AttrKind::Number,
        },
    ],
    metrics: None,
    params: None,
    tags: Some(KvTable {
        table: "model_version_tags",
        join: "x.model_pk = mv.model_pk AND x.version = mv.version",
    }),
    datasets: None,
    ne_includes_missing: true,
};

/// What a client supplies to create a model version.
#[derive(Debug, Clone, Default)]
pub struct ModelVersionDraft {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub tags: Vec<KeyValue>,
    pub run_link: Option<String>,
    pub description: Option<String>,
    pub model_id: Option<String>,
}

fn model_not_found(name: &str) -> Error {
    Error::not_found(format!(
        "Registered Model with name={} not found",
        limits::truncate(name, 256)
    ))
}

fn version_not_found(name: &str, version: &str) -> Error {
    Error::not_found(format!(
        "Model Version (name={}, version={}) not found",
        limits::truncate(name, 256),
        limits::truncate(version, 32)
    ))
}

fn validate_model_name(name: &str) -> StoreResult<()> {
    if name.is_empty() {
        return Err(Error::missing("name").into());
    }
    limits::validate_length("Registered model name", name, name, MAX_MODEL_NAME_LENGTH)?;
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "Invalid model name '{}': it must not contain '/' or control characters",
            limits::truncate(name, 64)
        ))
        .into());
    }
    Ok(())
}

fn validate_tag(t: &KeyValue) -> StoreResult<()> {
    limits::validate_key(KeyKind::Tag, &t.key)?;
    limits::validate_length("Tag value", &t.key, &t.value, MAX_REGISTRY_TAG_VALUE_LENGTH)?;
    Ok(())
}

fn validate_description(d: &str) -> StoreResult<()> {
    limits::validate_length("Description", "description", d, MAX_DESCRIPTION_LENGTH)?;
    Ok(())
}

fn parse_version(name: &str, version: &str) -> StoreResult<i64> {
    version
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            Error::invalid(format!(
                "Model version must be a positive integer, got '{}' for model '{}'",
                limits::truncate(version, 32),
                limits::truncate(name, 64)
            ))
            .into()
        })
}

fn validate_alias(alias: &str) -> StoreResult<()> {
    if alias.is_empty() {
        return Err(Error::missing("alias").into());
    }
    limits::validate_length("Alias", alias, alias, 255)?;
    let version_like = alias.len() > 1
        && (alias.starts_with('v') || alias.starts_with('V'))
        && alias[1..].bytes().all(|b| b.is_ascii_digit());
    if alias.eq_ignore_ascii_case("latest") || version_like {
        return Err(Error::invalid(format!(
            "'{alias}' alias name (case insensitive) is reserved: aliases may not be 'latest' or look like a version ('v1')"
        ))
        .into());
    }
    if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid(format!(
            "Invalid alias name '{}': use letters, digits, '_' and '-'",
            limits::truncate(alias, 64)
        ))
        .into());
    }
    Ok(())
}

const MV_COLUMNS: &str = "rm.name, mv.model_pk, mv.version, mv.creation_time, mv.last_updated_time, mv.description, \
     mv.user_id, mv.current_stage, mv.source, mv.run_id, mv.run_link, mv.status, mv.status_message, mv.logged_model_id, mv.quarantine, mv.root_digest";

fn model_tags(owner: &[Bind]) -> rows::KvOwner<'_> {
    rows::KvOwner {
        table: "registered_model_tags",
        columns: "model_pk",
        values: owner,
    }
}

fn version_tags(owner: &[Bind]) -> rows::KvOwner<'_> {
    rows::KvOwner {
        table: "model_version_tags",
        columns: "model_pk, version",
        values: owner,
    }
}

fn version_from_row(row: &AnyRow) -> StoreResult<ModelVersion> {
    let version: i64 = row.try_get("version")?;
    Ok(ModelVersion {
        name: row.try_get("name")?,
        version: version.to_string(),
        creation_timestamp: row.try_get("creation_time")?,
        last_updated_timestamp: row.try_get("last_updated_time")?,
        user_id: row.try_get("user_id")?,
        current_stage: row.try_get("current_stage")?,
        description: row.try_get("description")?,
        source: row.try_get("source")?,
        run_id: row.try_get("run_id")?,
        status: row.try_get("status")?,
        status_message: row.try_get("status_message")?,
        tags: Vec::new(),
        run_link: row.try_get("run_link")?,
        aliases: Vec::new(),
        model_id: row.try_get("logged_model_id")?,
    })
}

/// A quarantined version may not be put to use (aliases, promotion) until it is released.
fn refuse_quarantined(name: &str, version: &str, row: &AnyRow, what: &str) -> StoreResult<()> {
    match row.try_get::<Option<String>, _>("quarantine")? {
        Some(reason) => Err(Error::new(
            ErrorCode::InvalidState,
            format!("Model version {name}/{version} is quarantined ({reason}); {what} until it is released"),
        )
        .into()),
        None => Ok(()),
    }
}

impl MetaStore {
    async fn model_pk(&self, name: &str) -> StoreResult<i64> {
        sqlx::query("SELECT id FROM registered_models WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| model_not_found(name))?
            .try_get("id")
            .map_err(Into::into)
    }

    pub async fn create_registered_model(
        &self,
        name: &str,
        tags: &[KeyValue],
        description: Option<&str>,
    ) -> StoreResult<RegisteredModel> {
        validate_model_name(name)?;
        tags.iter().try_for_each(validate_tag)?;
        if let Some(d) = description {
            validate_description(d)?;
        }
        let now = time::now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO registered_models (name, creation_time, last_updated_time, description) VALUES ($1, $2, $2, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(now)
        .bind(description.map(str::to_owned))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(Error::already_exists(format!(
                "Registered Model (name={name}) already exists."
            ))
            .into());
        };
        let pk: i64 = row.try_get("id")?;
        rows::upsert_kv(&mut tx, &model_tags(&[Bind::Int(pk)]), tags).await?;
        tx.commit().await?;
        self.get_registered_model(name).await
    }

    pub async fn get_registered_model(&self, name: &str) -> StoreResult<RegisteredModel> {
        let row = sqlx::query("SELECT id, name, creation_time, last_updated_time, description FROM registered_models WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| model_not_found(name))?;
        let mut models = self.registered_models_from_rows(&[row]).await?;
        models.pop().ok_or_else(|| model_not_found(name).into())
    }

    async fn registered_models_from_rows(
        &self,
        rows: &[AnyRow],
    ) -> StoreResult<Vec<RegisteredModel>> {
        let pks: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("id").map(|i| i.to_string()))
            .collect::<Result<_, _>>()?;
        let mut tags = rows::kv_by_id(
            &self.read,
            "SELECT CAST(model_pk AS TEXT) AS id, key, value FROM registered_model_tags WHERE CAST(model_pk AS TEXT) IN ",
            " ORDER BY key",
            &pks,
        )
        .await?;
        let mut aliases: HashMap<String, Vec<Alias>> = HashMap::new();
        let mut latest: HashMap<String, Vec<ModelVersion>> = HashMap::new();
        for chunk in pks.chunks(rows::ID_CHUNK) {
            let mut q = Sql::new(
                "SELECT CAST(model_pk AS TEXT) AS id, alias, version FROM registered_model_aliases WHERE CAST(model_pk AS TEXT) IN ",
            );
            q.bind_list(chunk.iter().cloned()).push(" ORDER BY alias");
            for r in q.query().fetch_all(&self.read).await? {
                let v: i64 = r.try_get("version")?;
                aliases.entry(r.try_get("id")?).or_default().push(Alias {
                    alias: r.try_get("alias")?,
                    version: v.to_string(),
                });
            }
            // The newest version in each stage, as MLflow's `latest_versions`.
            let mut q = Sql::new(&format!(
                "SELECT {MV_COLUMNS}, CAST(mv.model_pk AS TEXT) AS id FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_pk \
                 WHERE mv.deleted = FALSE AND CAST(mv.model_pk AS TEXT) IN "
            ));
            q.bind_list(chunk.iter().cloned());
            q.push(" AND mv.version = (SELECT MAX(v2.version) FROM model_versions v2 WHERE v2.model_pk = mv.model_pk AND v2.current_stage = mv.current_stage AND v2.deleted = FALSE) ORDER BY mv.version");
            for r in q.query().fetch_all(&self.read).await? {
                latest
                    .entry(r.try_get("id")?)
                    .or_default()
                    .push(version_from_row(&r)?);
            }
        }
        rows.iter()
            .zip(&pks)
            .map(|(r, pk)| {
                Ok(RegisteredModel {
                    name: r.try_get("name")?,
                    creation_timestamp: r.try_get("creation_time")?,
                    last_updated_timestamp: r.try_get("last_updated_time")?,
                    description: r.try_get("description")?,
                    latest_versions: latest.remove(pk).unwrap_or_default(),
                    tags: tags.remove(pk).unwrap_or_default(),
                    aliases: aliases.remove(pk).unwrap_or_default(),
                })
            })
            .collect()
    }

    pub async fn search_registered_models(
        &self,
        filter: Option<&str>,
        order_by: &[String],
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> StoreResult<Page<RegisteredModel>> {
        let q = Sql::new(
            "SELECT rm.id, rm.name, rm.creation_time, rm.last_updated_time, rm.description FROM registered_models rm WHERE 1 = 1",
        );
        let spec = PageSpec {
            filter,
            order_by,
            max_results,
            page_token,
            default_results: 100,
            max_allowed: 1000,
        };
        let (rows, next_page_token) =
            sql::fetch_page(&self.read, q, &MODELS, spec, "rm.name ASC").await?;
        let items = self.registered_models_from_rows(&rows).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
    ) -> StoreResult<RegisteredModel> {
        validate_model_name(new_name)?;
        let pk = self.model_pk(name).await?;
        let taken = sqlx::query("SELECT 1 FROM registered_models WHERE name = $1")
            .bind(new_name)
            .fetch_optional(&self.read)
            .await?;
        if taken.is_some() && name != new_name {
            return Err(Error::already_exists(format!(
                "Registered Model (name={new_name}) already exists."
            ))
            .into());
        }
        sqlx::query("UPDATE registered_models SET name = $1, last_updated_time = $2 WHERE id = $3")
            .bind(new_name)
            .bind(time::now_ms())
            .bind(pk)
            .write_on(self)
            .await?;
        self.get_registered_model(new_name).await
    }

    pub async fn update_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> StoreResult<RegisteredModel> {
        let pk = self.model_pk(name).await?;
        if let Some(d) = description {
            validate_description(d)?;
        }
        sqlx::query(
            "UPDATE registered_models SET description = $1, last_updated_time = $2 WHERE id = $3",
        )
        .bind(description.map(str::to_owned))
        .bind(time::now_ms())
        .bind(pk)
        .write_on(self)
        .await?;
        self.get_registered_model(name).await
    }

    /// Deletes the model with all its versions, tags and aliases, in one transaction.
    pub async fn delete_registered_model(&self, name: &str) -> StoreResult<()> {
        let pk = self.model_pk(name).await?;
        let mut tx = self.begin_write().await?;
        for table in [
            "model_version_tags",
            "registered_model_aliases",
            "model_versions",
            "registered_model_tags",
        ] {
            query_fmt!("DELETE FROM {table} WHERE model_pk = $1")
                .bind(pk)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM registered_models WHERE id = $1")
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_registered_model_tag(&self, name: &str, tag: &KeyValue) -> StoreResult<()> {
        validate_tag(tag)?;
        let pk = self.model_pk(name).await?;
        let mut tx = self.begin_write().await?;
        rows::upsert_kv(
            &mut tx,
            &model_tags(&[Bind::Int(pk)]),
            std::slice::from_ref(tag),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> StoreResult<()> {
        let pk = self.model_pk(name).await?;
        let done =
            sqlx::query("DELETE FROM registered_model_tags WHERE model_pk = $1 AND key = $2")
                .bind(pk)
                .bind(key)
                .write_on(self)
                .await?;
        rows::deleted_one(done, || {
            format!(
                "No tag with key '{}' on registered model '{name}'",
                limits::truncate(key, 64)
            )
        })?;
        Ok(())
    }

    pub async fn create_model_version(
        &self,
        draft: &ModelVersionDraft,
    ) -> StoreResult<ModelVersion> {
        if draft.source.is_empty() {
            return Err(Error::missing("source").into());
        }
        uri::parse("source", &draft.source)?;
        draft.tags.iter().try_for_each(validate_tag)?;
        if let Some(d) = &draft.description {
            validate_description(d)?;
        }
        let mut run_id = draft.run_id.clone().filter(|r| !r.is_empty());
        if let Some(model_id) = draft.model_id.as_deref().filter(|m| !m.is_empty()) {
            let lm = self.get_logged_model(model_id).await?;
            if run_id.is_none() {
                run_id = lm.info.source_run_id.clone();
            }
        }
        if let Some(r) = &run_id {
            if !ids::is_run_id(r) {
                return Err(Error::invalid(format!(
                    "Invalid run_id '{}'",
                    limits::truncate(r, 64)
                ))
                .into());
            }
            self.get_run_info(r).await?;
        }
        let pk = self.model_pk(&draft.name).await?;
        let now = time::now_ms();
        let mut tx = self.begin_write().await?;
        // Touching the model's row first locks it (PostgreSQL) until commit, so concurrent
        // registrations number their versions one after the other instead of colliding.
        sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE id = $2")
            .bind(now)
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM model_versions WHERE model_pk = $1",
        )
        .bind(pk)
        .fetch_one(&mut *tx)
        .await?
        .try_get("next")?;
        sqlx::query(
            "INSERT INTO model_versions (model_pk, version, creation_time, last_updated_time, description, user_id, current_stage, \
             source, run_id, run_link, status, status_message, logged_model_id, deleted) \
             VALUES ($1, $2, $3, $3, $4, NULL, 'None', $5, $6, $7, 'READY', NULL, $8, FALSE)",
        )
        .bind(pk)
        .bind(next)
        .bind(now)
        .bind(draft.description.clone().unwrap_or_default())
        .bind(&draft.source)
        .bind(run_id.clone().unwrap_or_default())
        .bind(draft.run_link.clone().unwrap_or_default())
        .bind(draft.model_id.clone().filter(|m| !m.is_empty()))
        .execute(&mut *tx)
        .await?;
        rows::upsert_kv(
            &mut tx,
            &version_tags(&[Bind::Int(pk), Bind::Int(next)]),
            &draft.tags,
        )
        .await?;
        tx.commit().await?;
        self.get_model_version(&draft.name, &next.to_string()).await
    }

    pub(super) async fn version_row(
        &self,
        name: &str,
        version: &str,
    ) -> StoreResult<(i64, i64, AnyRow)> {
        let v = parse_version(name, version)?;
        let row = query_fmt!(
            "SELECT {MV_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_pk \
             WHERE rm.name = $1 AND mv.version = $2 AND mv.deleted = FALSE"
        )
        .bind(name)
        .bind(v)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| version_not_found(name, version))?;
        let pk: i64 = row.try_get("model_pk")?;
        Ok((pk, v, row))
    }

    pub async fn get_model_version(&self, name: &str, version: &str) -> StoreResult<ModelVersion> {
        let (_, _, row) = self.version_row(name, version).await?;
        let mut out = self.versions_from_rows(&[row]).await?;
        out.pop()
            .ok_or_else(|| version_not_found(name, version).into())
    }

    async fn versions_from_rows(&self, rows: &[AnyRow]) -> StoreResult<Vec<ModelVersion>> {
        let mut versions = rows
            .iter()
            .map(version_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let keys: Vec<String> = rows
            .iter()
            .map(|r| {
                Ok(format!(
                    "{}:{}",
                    r.try_get::<i64, _>("model_pk")?,
                    r.try_get::<i64, _>("version")?
                ))
            })
            .collect::<StoreResult<_>>()?;
        let mut tags = rows::kv_by_id(
            &self.read,
            "SELECT CAST(model_pk AS TEXT) || ':' || CAST(version AS TEXT) AS id, key, value FROM model_version_tags \
             WHERE CAST(model_pk AS TEXT) || ':' || CAST(version AS TEXT) IN ",
            " ORDER BY key",
            &keys,
        )
        .await?;
        let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in keys.chunks(rows::ID_CHUNK) {
            let mut q = Sql::new(
                "SELECT CAST(model_pk AS TEXT) || ':' || CAST(version AS TEXT) AS id, alias FROM registered_model_aliases \
                 WHERE CAST(model_pk AS TEXT) || ':' || CAST(version AS TEXT) IN ",
            );
            q.bind_list(chunk.iter().cloned()).push(" ORDER BY alias");
            for r in q.query().fetch_all(&self.read).await? {
                aliases
                    .entry(r.try_get("id")?)
                    .or_default()
                    .push(r.try_get("alias")?);
            }
        }
        for (v, key) in versions.iter_mut().zip(&keys) {
            v.tags = tags.remove(key).unwrap_or_default();
            v.aliases = aliases.remove(key).unwrap_or_default();
        }
        Ok(versions)
    }

    pub async fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: Option<&str>,
    ) -> StoreResult<ModelVersion> {
        let (pk, v, _) = self.version_row(name, version).await?;
        if let Some(d) = description {
            validate_description(d)?;
            sqlx::query("UPDATE model_versions SET description = $1, last_updated_time = $2 WHERE model_pk = $3 AND version = $4")
                .bind(d)
                .bind(time::now_ms())
                .bind(pk)
                .bind(v)
                .write_on(self)
                .await?;
        }
        self.get_model_version(name, version).await
    }

    /// Soft delete: the number is never reused. Its aliases and tags go with it.
    pub async fn delete_model_version(&self, name: &str, version: &str) -> StoreResult<()> {
        let (pk, v, _) = self.version_row(name, version).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM registered_model_aliases WHERE model_pk = $1 AND version = $2")
            .bind(pk)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM model_version_tags WHERE model_pk = $1 AND version = $2")
            .bind(pk)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE model_versions SET deleted = TRUE, current_stage = $1, last_updated_time = $2 WHERE model_pk = $3 AND version = $4")
            .bind(DELETED_STAGE)
            .bind(time::now_ms())
            .bind(pk)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE id = $2")
            .bind(time::now_ms())
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn transition_model_version_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> StoreResult<ModelVersion> {
        let stage = Stage::parse(stage)?;
        let (pk, v, row) = self.version_row(name, version).await?;
        if matches!(stage, Stage::Staging | Stage::Production) {
            refuse_quarantined(name, version, &row, "it cannot be promoted")?;
        }
        let now = time::now_ms();
        let mut tx = self.begin_write().await?;
        if archive_existing && matches!(stage, Stage::Staging | Stage::Production) {
            sqlx::query(
                "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $1 \
                 WHERE model_pk = $2 AND version != $3 AND current_stage = $4 AND deleted = FALSE",
            )
            .bind(now)
            .bind(pk)
            .bind(v)
            .bind(stage.as_str())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE model_versions SET current_stage = $1, last_updated_time = $2 WHERE model_pk = $3 AND version = $4")
            .bind(stage.as_str())
            .bind(now)
            .bind(pk)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE id = $2")
            .bind(now)
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_model_version(name, version).await
    }

    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        tag: &KeyValue,
    ) -> StoreResult<()> {
        validate_tag(tag)?;
        let (pk, v, _) = self.version_row(name, version).await?;
        let mut tx = self.begin_write().await?;
        rows::upsert_kv(
            &mut tx,
            &version_tags(&[Bind::Int(pk), Bind::Int(v)]),
            std::slice::from_ref(tag),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
    ) -> StoreResult<()> {
        let (pk, v, _) = self.version_row(name, version).await?;
        let done = sqlx::query(
            "DELETE FROM model_version_tags WHERE model_pk = $1 AND version = $2 AND key = $3",
        )
        .bind(pk)
        .bind(v)
        .bind(key)
        .write_on(self)
        .await?;
        rows::deleted_one(done, || {
            format!(
                "No tag with key '{}' on model version {name}/{version}",
                limits::truncate(key, 64)
            )
        })?;
        Ok(())
    }

    pub async fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> StoreResult<()> {
        validate_alias(alias)?;
        let (pk, v, row) = self.version_row(name, version).await?;
        refuse_quarantined(name, version, &row, "an alias cannot point at it")?;
        sqlx::query("INSERT INTO registered_model_aliases (model_pk, alias, version) VALUES ($1, $2, $3) ON CONFLICT (model_pk, alias) DO UPDATE SET version = excluded.version")
            .bind(pk)
            .bind(alias)
            .bind(v)
            .write_on(self)
            .await?;
        Ok(())
    }

    pub async fn delete_registered_model_alias(&self, name: &str, alias: &str) -> StoreResult<()> {
        let pk = self.model_pk(name).await?;
        sqlx::query("DELETE FROM registered_model_aliases WHERE model_pk = $1 AND alias = $2")
            .bind(pk)
            .bind(alias)
            .write_on(self)
            .await?;
        Ok(())
    }

    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> StoreResult<ModelVersion> {
        let pk = self.model_pk(name).await?;
        let version: i64 = sqlx::query(
            "SELECT version FROM registered_model_aliases WHERE model_pk = $1 AND alias = $2",
        )
        .bind(pk)
        .bind(alias)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "Registered model alias {} not found.",
                limits::truncate(alias, 64)
            ))
        })?
        .try_get("version")?;
        self.get_model_version(name, &version.to_string()).await
    }

    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[String],
    ) -> StoreResult<Vec<ModelVersion>> {
        let model = self.get_registered_model(name).await?;
        let wanted: Vec<Stage> = stages
            .iter()
            .map(|s| Stage::parse(s))
            .collect::<Result<_, _>>()?;
        let mut out: Vec<ModelVersion> = model
            .latest_versions
            .into_iter()
            .filter(|v| wanted.is_empty() || wanted.iter().any(|s| s.as_str() == v.current_stage))
            .collect();
        // latest_versions carries no tags or aliases; the full objects do.
        for v in &mut out {
            *v = self.get_model_version(name, &v.version).await?;
        }
        Ok(out)
    }

    pub async fn search_model_versions(
        &self,
        filter: Option<&str>,
        order_by: &[String],
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> StoreResult<Page<ModelVersion>> {
        let q = Sql::new(&format!(
            "SELECT {MV_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_pk WHERE mv.deleted = FALSE"
        ));
        let spec = PageSpec {
            filter,
            order_by,
            max_results,
            page_token,
            default_results: 10_000,
            max_allowed: 200_000,
        };
        let (rows, next_page_token) = sql::fetch_page(
            &self.read,
            q,
            &VERSIONS,
            spec,
            "rm.name ASC, mv.version DESC",
        )
        .await?;
        let items = self.versions_from_rows(&rows).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Where the version's files are: resolves `runs:/` and `models:/m-...` sources through the
    /// store; any other accepted source is returned as is.
    pub async fn model_version_download_uri(
        &self,
        name: &str,
        version: &str,
    ) -> StoreResult<String> {
        let mv = self.get_model_version(name, version).await?;
        if let Some(model_id) = &mv.model_id {
            return Ok(self.get_logged_model(model_id).await?.info.artifact_uri);
        }
        match uri::parse("source", &mv.source)? {
            ArtifactUri::Run { run_id, path } => {
                let info = self.get_run_info(&run_id).await?;
                Ok(if path.is_root() {
                    info.artifact_uri
                } else {
                    format!("{}/{path}", info.artifact_uri)
                })
            }
            ArtifactUri::Model(reference) if ids::is_logged_model_id(&reference) => {
                Ok(self.get_logged_model(&reference).await?.info.artifact_uri)
            }
            _ => Ok(mv.source),
        }
    }
}
