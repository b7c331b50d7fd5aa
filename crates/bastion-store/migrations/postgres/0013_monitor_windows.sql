-- What the monitor measured, kept for people to look back at (the dashboard's drift and
-- detector charts): one row per closed window of a model version (`kind` = 'window': its
-- drift per feature, rates and latency) and, at most once a minute per model, the
-- per-caller detector scores (`kind` = 'callers', `version` empty). Written in the same
-- transaction as the consumer's cursor, so a window is recorded exactly once. Telemetry, not
-- evidence: outside the audit log.
CREATE TABLE monitor_windows (
    id         BIGSERIAL PRIMARY KEY,
    consumer   TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    model_name TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    start_ms   BIGINT NOT NULL,
    end_ms     BIGINT NOT NULL,
    report     TEXT   NOT NULL
);
CREATE INDEX monitor_windows_by_model ON monitor_windows (model_name, kind, id);
