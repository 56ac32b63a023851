-- A window close writes 10,000 statement bodies and as many outbox rows of ~20 kB of JSON each.
-- pglz, Postgres's default TOAST compression, costs about 1 s of CPU per 20 MB here: most of
-- the time those writes take. lz4 does it for a fraction where the server has it (the official
-- image does); without it the bodies are stored out of line uncompressed (~2.5 times the space).
DO $$
BEGIN
    ALTER TABLE statements ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE outbox ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE statements ALTER COLUMN body SET STORAGE EXTERNAL;
    ALTER TABLE outbox ALTER COLUMN body SET STORAGE EXTERNAL;
END $$;

-- The payout file's execution date, without reading (and decompressing) every body for it.
ALTER TABLE statements ADD COLUMN expected_payout_date DATE;
UPDATE statements SET expected_payout_date = (body->>'expected_payout_date')::date;
ALTER TABLE statements ALTER COLUMN expected_payout_date SET NOT NULL;
