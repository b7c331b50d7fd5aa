-- Every write appends an audit row, so each index on audit_log is paid on the hot path of
-- tracking (log-metric). Queries by actor, resource or time are an auditor's occasional scan;
-- they do not justify three extra B-tree updates per request.
DROP INDEX audit_log_by_actor;
DROP INDEX audit_log_by_resource;
DROP INDEX audit_log_by_time;
