-- Serving deployments: per registered model, its route table and serving settings as a JSON
-- document whose meaning belongs to the serving layer. `revision` grows with every change,
-- so of two concurrent changes made from the same revision only one applies.
CREATE TABLE deployments (
    model_name   TEXT   PRIMARY KEY,
    body         TEXT   NOT NULL,
    revision     BIGINT NOT NULL,
    updated_by   TEXT   NOT NULL,
    updated_time BIGINT NOT NULL
);

-- One row per inference request, written in batches off the request path for monitoring.
-- Telemetry, not an audit record: rows may be dropped under load (and are counted).
CREATE TABLE inference_events (
    id           INTEGER PRIMARY KEY,
    time_ms      BIGINT NOT NULL,
    model_name   TEXT   NOT NULL,
    version      TEXT   NOT NULL,
    route        TEXT   NOT NULL,
    actor        TEXT   NOT NULL,
    request_id   TEXT   NOT NULL,
    latency_us   BIGINT NOT NULL,
    status       BIGINT NOT NULL,
    decision     TEXT   NOT NULL,
    input_digest TEXT   NOT NULL,
    rows_count   BIGINT NOT NULL,
    features     TEXT,
    outputs      TEXT,
    guards       TEXT
);
CREATE INDEX inference_events_by_model ON inference_events (model_name, version, time_ms);
CREATE INDEX inference_events_by_time ON inference_events (time_ms);
