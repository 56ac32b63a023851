-- Expiry credit notes: clearing's own copy of the programmes' terms and issued passes (from
-- the issuer's events), and the one credit note per programme.
CREATE TABLE programmes (
    programme_id     UUID PRIMARY KEY,
    face_value_cents BIGINT NOT NULL,
    valid_until      DATE NOT NULL,
    grace_days       INTEGER NOT NULL,
    funders          JSONB NOT NULL
);

CREATE TABLE issued_passes (
    pass_id       UUID PRIMARY KEY,
    programme_id  UUID NOT NULL,
    booklet_id    UUID NOT NULL
);
CREATE INDEX issued_passes_programme ON issued_passes (programme_id);
CREATE INDEX ledger_lines_programme_pass ON ledger_lines (programme_id, pass_id);

CREATE TABLE credit_notes (
    programme_id   UUID PRIMARY KEY,
    credit_note_id UUID NOT NULL UNIQUE,
    total_cents    BIGINT NOT NULL,
    body           JSONB NOT NULL
);
