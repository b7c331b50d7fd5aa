-- A consumer's cursor moves by compare-and-swap on `revision`, which every commit bumps. The
-- position alone cannot serve: a commit that only read labels (or only raised an integrity
-- alert) leaves it where it was, and a second worker at the same position must still lose.
ALTER TABLE monitor_cursors ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
UPDATE monitor_cursors SET revision = 1;

-- Which worker of a consumer group reads the stream now. Only the holder fetches, so a
-- NATS consumer's deliveries are not split between workers; the others wait until
-- `until_ms` passes without a renewal. Correctness never rests on the lease (the cursor's
-- revision does); it only keeps standby workers from doing work that would be thrown away.
CREATE TABLE monitor_leases (
    consumer TEXT   PRIMARY KEY,
    holder   TEXT   NOT NULL,
    until_ms BIGINT NOT NULL
);
