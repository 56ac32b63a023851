-- sample_statistics(table, target): every column of `table` gets the statistics target `target`,
-- for the tables written on the hot path that only grow (a row per redemption). ANALYZE samples
-- 300 rows per unit of the largest target (30,000 rows at the default 100) and autovacuum runs it
-- after every 10 % of growth: at 3,000 redemptions/s that was an ANALYZE of redemptions and one
-- of the clearing ledger every ~5 s, 0.11-0.22 s of CPU each, in one burst (P1 bench: the bursts
-- lined up with seconds whose p99 passed 50 ms). At target 10 (3,000 rows sampled), ANALYZE of a
-- 200,000-row redemptions table took 13 ms instead of 132 ms. Their queries go by key (a pass, a
-- redemption, a site, a window), for which ten common values and ten histogram buckets are enough.
CREATE OR REPLACE FUNCTION sample_statistics(tbl regclass, target integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    col name;
BEGIN
    FOR col IN
        SELECT attname FROM pg_attribute WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS %s', tbl, col, target);
    END LOOP;
END
$$;
