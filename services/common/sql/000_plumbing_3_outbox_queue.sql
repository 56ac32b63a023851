-- The outbox is a queue: the relay deletes published rows after the outbox's retention
-- (services/common/outbox.py, OutboxSettings; none kept by default), so rows come and go at the
-- rate events are made. Autovacuum's default waits for dead rows to reach 20 % of the table, which
-- for a queue means while it keeps growing; vacuumed after every 10,000 dead rows instead, the
-- pages freed by pruned rows take the next events, and the table stays the size of a few seconds
-- of events instead of gaining ~1.1 kB per event for ever (P1 bench, 3,000 redemptions/s: new
-- table and index pages 4.9 MB/s with the outbox kept, 2.1 MB/s pruned and vacuumed; those new
-- pages are what the kernel writes back in bursts that stall commits).
-- The outbox's unique event_id now drops an event enqueued twice only while the first is still
-- held; consumers drop a repeat by its id whenever it comes (invariant 4), and the dead letters'
-- deterministic ids are recorded as processed (services/common/dead_letters.py).
-- How often autovacuum looks is the server's autovacuum_naptime (deploy/local sets 5 s).
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
ALTER TABLE outbox_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
