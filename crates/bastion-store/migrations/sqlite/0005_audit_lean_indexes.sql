-- Every write appends an audit row, so whatever audit_log costs per insert is paid on the hot
-- path of tracking (log-metric). Two changes make an append one B-tree insert instead of five:
-- `seq INTEGER PRIMARY KEY` makes the sequence the table's rowid (BIGINT PRIMARY KEY kept a
-- separate unique index beside the rowid tree), and the indexes by actor, resource and time
-- go: those are an auditor's occasional scans, not worth three index updates per request.
CREATE TABLE audit_log_new (
    seq         INTEGER PRIMARY KEY,
    time_ms     BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    resource    TEXT   NOT NULL,
    request_id  TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    body_sha256 TEXT,
    prev_hash   TEXT   NOT NULL,
    entry_hash  TEXT   NOT NULL
);
INSERT INTO audit_log_new (seq, time_ms, actor, action, resource, request_id, outcome, body_sha256, prev_hash, entry_hash)
    SELECT seq, time_ms, actor, action, resource, request_id, outcome, body_sha256, prev_hash, entry_hash FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
