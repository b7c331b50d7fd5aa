-- latest_metrics follows metrics inside the database, so logging a metric is one INSERT (one
-- round trip, atomic without an explicit transaction). A duplicate metric is not inserted and
-- so does not fire the trigger.
CREATE TRIGGER metrics_latest AFTER INSERT ON metrics
BEGIN
    INSERT INTO latest_metrics (run_uuid, key, value, timestamp, step, is_nan)
    VALUES (NEW.run_uuid, NEW.key, NEW.value, NEW.timestamp, NEW.step, NEW.is_nan)
    ON CONFLICT (run_uuid, key) DO UPDATE SET
        value = excluded.value, timestamp = excluded.timestamp, step = excluded.step, is_nan = excluded.is_nan
    WHERE excluded.step > latest_metrics.step
       OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp)
       OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp
           AND excluded.value > latest_metrics.value);
END;
