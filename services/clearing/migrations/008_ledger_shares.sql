-- The funder shares a line is split by, stored once per share list instead of as JSONB on every
-- line (~180 bytes of a ~330-byte row, written 20,000 times a second): a line names its list by
-- `shares_id`, the first 128 bits of the SHA-256 of "funder_id:share_bp,..." in the list's order
-- (services/clearing/pg_store.shares_id computes the same), so that the worker knows a list's id
-- without asking the database. The worker writes a batch's lists (ON CONFLICT DO NOTHING) in the
-- transaction of its lines: a line's list is always there; no foreign key check per line.
CREATE TABLE ledger_shares (
    shares_id UUID PRIMARY KEY,
    funders   JSONB NOT NULL
);

CREATE FUNCTION pg_temp.shares_id(funders JSONB) RETURNS UUID LANGUAGE sql IMMUTABLE AS $$
    SELECT substr(encode(sha256(convert_to(
        string_agg((f ->> 'funder_id') || ':' || (f ->> 'share_bp'), ',' ORDER BY n), 'UTF8')), 'hex'), 1, 32)::uuid
    FROM jsonb_array_elements(funders) WITH ORDINALITY AS e (f, n)
$$;

INSERT INTO ledger_shares (shares_id, funders)
SELECT pg_temp.shares_id(funders), funders FROM (SELECT DISTINCT funders FROM ledger_lines) lists
ON CONFLICT DO NOTHING;

ALTER TABLE ledger_lines ADD COLUMN shares_id UUID;
UPDATE ledger_lines SET shares_id = pg_temp.shares_id(funders);
ALTER TABLE ledger_lines ALTER COLUMN shares_id SET NOT NULL;
ALTER TABLE ledger_lines DROP COLUMN funders;

-- A b-tree insert per line at random places (pass ids are random), 20-25 % of the ledger's
-- write time (measured alone on the database), for one query: the expiry credit notes' "passes
-- of this programme used", run once per programme after its validity ended, by finance. It
-- reads the ledger through instead.
DROP INDEX ledger_lines_programme_pass;
