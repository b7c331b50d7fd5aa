-- Tracking, registry and artifact index (SQLite). Kept column-for-column equal to the
-- PostgreSQL file beside this one; only types, identity syntax and storage differ. Tables keyed
-- by a composite primary key are WITHOUT ROWID: a lookup by key is then one B-tree search
-- that also yields the value, which is what search and run loading do thousands of times.

CREATE TABLE experiments (
    experiment_id     INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    artifact_location TEXT    NOT NULL,
    lifecycle_stage   TEXT    NOT NULL,
    creation_time     BIGINT  NOT NULL,
    last_update_time  BIGINT  NOT NULL
);

CREATE TABLE experiment_tags (
    experiment_id BIGINT NOT NULL REFERENCES experiments (experiment_id),
    key           TEXT   NOT NULL,
    value         TEXT   NOT NULL,
    PRIMARY KEY (experiment_id, key)
) WITHOUT ROWID;

CREATE TABLE runs (
    run_uuid        TEXT   PRIMARY KEY,
    experiment_id   BIGINT NOT NULL REFERENCES experiments (experiment_id),
    name            TEXT   NOT NULL,
    user_id         TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    start_time      BIGINT NOT NULL,
    end_time        BIGINT,
    artifact_uri    TEXT   NOT NULL,
    lifecycle_stage TEXT   NOT NULL,
    deleted_time    BIGINT
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, lifecycle_stage, start_time);

-- Every logged value. MLflow's primary key: an identical metric logged twice is one row.
CREATE TABLE metrics (
    run_uuid  TEXT    NOT NULL REFERENCES runs (run_uuid),
    key       TEXT    NOT NULL,
    value     REAL    NOT NULL,
    timestamp BIGINT  NOT NULL,
    step      BIGINT  NOT NULL,
    is_nan    BOOLEAN NOT NULL,
    PRIMARY KEY (run_uuid, key, timestamp, step, value, is_nan)
) WITHOUT ROWID;

-- The value with the highest (step, timestamp, value) per key: what runs/get and search see.
CREATE TABLE latest_metrics (
    run_uuid  TEXT    NOT NULL REFERENCES runs (run_uuid),
    key       TEXT    NOT NULL,
    value     REAL    NOT NULL,
    timestamp BIGINT  NOT NULL,
    step      BIGINT  NOT NULL,
    is_nan    BOOLEAN NOT NULL,
    PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
CREATE INDEX latest_metrics_by_key ON latest_metrics (key, value);

CREATE TABLE params (
    run_uuid TEXT NOT NULL REFERENCES runs (run_uuid),
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
CREATE INDEX params_by_key ON params (key, value);

CREATE TABLE tags (
    run_uuid TEXT NOT NULL REFERENCES runs (run_uuid),
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
CREATE INDEX tags_by_key ON tags (key, value);

CREATE TABLE datasets (
    dataset_id    INTEGER PRIMARY KEY,
    experiment_id BIGINT NOT NULL REFERENCES experiments (experiment_id),
    name          TEXT   NOT NULL,
    digest        TEXT   NOT NULL,
    source_type   TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    schema        TEXT,
    profile       TEXT,
    UNIQUE (experiment_id, name, digest)
);

CREATE TABLE run_dataset_inputs (
    run_uuid   TEXT   NOT NULL REFERENCES runs (run_uuid),
    dataset_id BIGINT NOT NULL REFERENCES datasets (dataset_id),
    context    TEXT,
    tags_json  TEXT   NOT NULL,
    PRIMARY KEY (run_uuid, dataset_id)
) WITHOUT ROWID;

CREATE TABLE run_model_refs (
    run_uuid  TEXT   NOT NULL REFERENCES runs (run_uuid),
    direction TEXT   NOT NULL,
    model_id  TEXT   NOT NULL,
    step      BIGINT,
    PRIMARY KEY (run_uuid, direction, model_id)
) WITHOUT ROWID;

CREATE TABLE registered_models (
    id                INTEGER PRIMARY KEY,
    name              TEXT   NOT NULL UNIQUE,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    description       TEXT
);

CREATE TABLE registered_model_tags (
    model_pk BIGINT NOT NULL REFERENCES registered_models (id),
    key      TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    PRIMARY KEY (model_pk, key)
) WITHOUT ROWID;

CREATE TABLE model_versions (
    model_pk          BIGINT NOT NULL REFERENCES registered_models (id),
    version           BIGINT NOT NULL,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    description       TEXT   NOT NULL,
    user_id           TEXT,
    current_stage     TEXT   NOT NULL,
    source            TEXT   NOT NULL,
    run_id            TEXT   NOT NULL,
    run_link          TEXT   NOT NULL,
    status            TEXT   NOT NULL,
    status_message    TEXT,
    logged_model_id   TEXT,
    deleted           BOOLEAN NOT NULL,
    PRIMARY KEY (model_pk, version)
) WITHOUT ROWID;
CREATE INDEX model_versions_by_run ON model_versions (run_id);

CREATE TABLE model_version_tags (
    model_pk BIGINT NOT NULL,
    version  BIGINT NOT NULL,
    key      TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    PRIMARY KEY (model_pk, version, key),
    FOREIGN KEY (model_pk, version) REFERENCES model_versions (model_pk, version)
) WITHOUT ROWID;

CREATE TABLE registered_model_aliases (
    model_pk BIGINT NOT NULL REFERENCES registered_models (id),
    alias    TEXT   NOT NULL,
    version  BIGINT NOT NULL,
    PRIMARY KEY (model_pk, alias)
) WITHOUT ROWID;

CREATE TABLE logged_models (
    model_id          TEXT   PRIMARY KEY,
    experiment_id     BIGINT NOT NULL REFERENCES experiments (experiment_id),
    name              TEXT   NOT NULL,
    artifact_location TEXT   NOT NULL,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    status            TEXT   NOT NULL,
    status_message    TEXT,
    model_type        TEXT   NOT NULL,
    source_run_id     TEXT,
    lifecycle_stage   TEXT   NOT NULL
);
CREATE INDEX logged_models_by_experiment ON logged_models (experiment_id, creation_time);

CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL REFERENCES logged_models (model_id),
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
) WITHOUT ROWID;

CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL REFERENCES logged_models (model_id),
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
) WITHOUT ROWID;

CREATE TABLE logged_model_metrics (
    model_id  TEXT    NOT NULL REFERENCES logged_models (model_id),
    key       TEXT    NOT NULL,
    value     REAL    NOT NULL,
    timestamp BIGINT  NOT NULL,
    step      BIGINT  NOT NULL,
    is_nan    BOOLEAN NOT NULL,
    run_id    TEXT    NOT NULL,
    PRIMARY KEY (model_id, key, timestamp, step, run_id)
) WITHOUT ROWID;

-- The artifact namespace: a path below the artifact root names a content digest. The bytes
-- live in the blob store under that digest; no path here ever reaches a file system.
CREATE TABLE artifacts (
    path         TEXT   PRIMARY KEY,
    digest       TEXT   NOT NULL,
    size         BIGINT NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE INDEX artifacts_by_digest ON artifacts (digest);
