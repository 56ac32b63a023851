-- Names for the documents clearing renders (a site's name and SIRET, a funder's and a
-- programme's name: organisations, not personal data, as the issuer's events carry them), and
-- the passes the issuer cancelled (lost or stolen), credited back to the funders when unused.
CREATE TABLE sites (
    site_id UUID PRIMARY KEY,
    name    TEXT NOT NULL,
    siret   TEXT NOT NULL
);

CREATE TABLE funders (
    funder_id UUID PRIMARY KEY,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL
);

ALTER TABLE programmes ADD COLUMN name TEXT;

CREATE TABLE cancelled_passes (
    pass_id      UUID PRIMARY KEY,
    programme_id UUID NOT NULL,
    reason       TEXT NOT NULL
);
CREATE INDEX cancelled_passes_programme ON cancelled_passes (programme_id);

-- A programme now has two credit notes: its expired passes and its cancelled ones.
ALTER TABLE credit_notes ADD COLUMN kind TEXT NOT NULL DEFAULT 'expiry'
    CHECK (kind IN ('expiry', 'cancellation'));
ALTER TABLE credit_notes DROP CONSTRAINT credit_notes_pkey;
ALTER TABLE credit_notes ADD PRIMARY KEY (programme_id, kind);
