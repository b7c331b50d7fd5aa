-- True labels that came back after the answer (delayed feedback), one row per labelled
-- answer row, joined to its inference event when received: feedback for a request the
-- store never saw is reported back, not kept. The first label for a row stands.
CREATE TABLE inference_feedback (
    id            BIGSERIAL PRIMARY KEY,
    event_id      BIGINT NOT NULL,
    row_index     BIGINT NOT NULL,
    model_name    TEXT   NOT NULL,
    label         TEXT   NOT NULL,
    received_time BIGINT NOT NULL,
    received_by   TEXT   NOT NULL,
    UNIQUE (event_id, row_index)
);

-- Feedback names requests by the id the caller saw (x-request-id).
CREATE INDEX inference_events_by_request ON inference_events (model_name, request_id);
