-- A redemption no longer locks its pass's row and the open window's row (issue 4, P1).
-- The foreign keys from redemptions to passes and windows checked each inserted row with
-- SELECT ... FOR KEY SHARE on the referenced row: a row lock written into a random page of the
-- 660,000-pass projection for every redemption (a WAL record, a dirty page to write back, a
-- full-page image after each checkpoint), and, on the one open window's row that every
-- concurrent batch locks, a MultiXact. pg_stat_statements at 3,000 redemptions/s: the two checks
-- took 16.5 and 6.2 us a redemption, 13 % of redeem_passes' time.
-- What they guarded is given by the only writer of these columns: redeem_passes (003) takes
-- pass_id from the passes row it joined and window_id from current_window, in the statement
-- that inserts; passes and windows are never deleted (a pass is cancelled or expired by its
-- status, a window closed by its closed_at). Single use is still the unique index's.
ALTER TABLE redemptions DROP CONSTRAINT redemptions_pass_id_fkey;
ALTER TABLE redemptions DROP CONSTRAINT redemptions_window_id_fkey;
