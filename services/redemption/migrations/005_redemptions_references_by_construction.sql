-- The hot path's inserts without foreign-key triggers (issue 4, P1). redemptions.pass_id and
-- redemptions.window_id referenced passes and windows, but the only writer of redemptions is
-- redeem_passes, which takes the pass from a join with passes and the window from current_window,
-- and neither passes nor windows ever lose a row (the projection inserts passes and changes their
-- status; windows are only opened and closed). The checks could not fail, and each inserted row
-- paid for two: a lookup through SPI and a KEY SHARE lock on the parent row, i.e. a write of the
-- pass's heap tuple (and its WAL) for every redemption and, on the one open window's row, a
-- MultiXact whenever two batches commit at once. Measured here (batches of 4 and 16 from 4
-- connections): 155-171 -> 130 and 73 -> 57 us of backend CPU per redemption.
-- Single use stays with the partial unique index one_live_redemption_per_pass (invariant 3).
ALTER TABLE redemptions DROP CONSTRAINT redemptions_pass_id_fkey;
ALTER TABLE redemptions DROP CONSTRAINT redemptions_window_id_fkey;
