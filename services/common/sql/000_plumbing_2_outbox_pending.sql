-- Unpublished outbox rows are listed in `outbox_pending` (by seq) instead of being marked in the
-- outbox itself. Marking meant an UPDATE of each row once published: a second copy of the whole
-- row (its event bytes) in the table and in the WAL, plus new entries in its two indexes — for a
-- redemption, ~1.1 kB of the ~3.5 kB of WAL every commit waits to flush, and half the outbox's
-- growth (measured: 2,422 → 1,343 B of WAL and 2,191 → 1,151 B on disk per event). Publishing now
-- deletes the row's seq from outbox_pending, a small row that vacuum reuses. The outbox keeps
-- every event, so its unique event_id still makes an event enqueued twice (a deterministic id,
-- redelivered) go out once.
CREATE TABLE outbox_pending (
    seq BIGINT PRIMARY KEY
);
INSERT INTO outbox_pending (seq) SELECT seq FROM outbox WHERE published_at IS NULL;
DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN published_at;

-- Every row the outbox takes is pending, in the same transaction, whoever inserts it (enqueue,
-- redeem_passes, or a process of the previous version still running during an upgrade): the
-- database holds that invariant, as it holds single use. One statement-level trigger per INSERT
-- statement, over the rows it really inserted (ON CONFLICT DO NOTHING skips are not in it).
CREATE FUNCTION outbox_enqueued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_pending (seq) SELECT seq FROM enqueued;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_pending AFTER INSERT ON outbox REFERENCING NEW TABLE AS enqueued
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_enqueued();
