-- The tamper-evident audit log (see bastion-audit). Rows are appended in the same
-- transaction as the change they record; nothing updates or deletes them.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
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
CREATE INDEX audit_log_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_by_resource ON audit_log (resource, seq);
CREATE INDEX audit_log_by_time ON audit_log (time_ms);

-- Signed tree heads: (size, Merkle root, time) signed with the audit key.
CREATE TABLE audit_tree_heads (
    size      BIGINT PRIMARY KEY,
    root      TEXT   NOT NULL,
    time_ms   BIGINT NOT NULL,
    signature TEXT   NOT NULL
);
