-- The ledger is written for every redemption (bench P2: 20,000 lines/s), so each index on it
-- costs a b-tree insert per event. ledger_lines_site (site_id, window_id) serves no query:
-- statements read a window's lines by partition (ledger_lines_window), credit notes by
-- programme (ledger_lines_programme_pass). Restore it the day a query needs it.
DROP INDEX IF EXISTS ledger_lines_site;
