-- Incidents: what the monitor's alerts opened. Alerts with the same key (rule, model,
-- version and, for per-caller detectors, the caller) join the open incident instead of
-- opening another; people acknowledge and resolve it. `evidence` is the newest alert (its
-- signals and the window they came from).
CREATE TABLE incidents (
    id            BIGSERIAL PRIMARY KEY,
    alert_key     TEXT   NOT NULL,
    rule          TEXT   NOT NULL,
    severity      TEXT   NOT NULL,
    model_name    TEXT   NOT NULL,
    version       TEXT   NOT NULL,
    actor         TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    opened_time   BIGINT NOT NULL,
    updated_time  BIGINT NOT NULL,
    alerts        BIGINT NOT NULL,
    evidence      TEXT   NOT NULL,
    updated_by    TEXT   NOT NULL,
    note          TEXT   NOT NULL
);
CREATE INDEX incidents_by_key ON incidents (alert_key, status);
CREATE INDEX incidents_by_status ON incidents (status, id);
CREATE INDEX incidents_by_model ON incidents (model_name, id);

-- What the rules said to do about each alert. Written as `pending` in the same transaction
-- as the alert, taken (`running`) by one worker, then marked `done`, `failed` or `skipped`
-- with what happened: a worker that stops before taking them leaves them pending for the
-- next; one taken by a worker that died stays `running` rather than being done twice.
CREATE TABLE incident_responses (
    id           BIGSERIAL PRIMARY KEY,
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    response     TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    detail       TEXT   NOT NULL,
    created_time BIGINT NOT NULL,
    updated_time BIGINT NOT NULL
);
CREATE INDEX incident_responses_by_incident ON incident_responses (incident_id, id);
CREATE INDEX incident_responses_by_status ON incident_responses (status, id);

-- Where each monitor consumer is in the inference event stream: every event with an id up
-- to `after_id` has been judged. `state` is the consumer's open windows and alert streaks,
-- so a restarted worker neither loses nor repeats what it had seen.
CREATE TABLE monitor_cursors (
    consumer     TEXT   PRIMARY KEY,
    after_id     BIGINT NOT NULL,
    state        TEXT   NOT NULL,
    updated_time BIGINT NOT NULL
);
