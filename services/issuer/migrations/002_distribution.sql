-- Prescribers, distribution to beneficiaries, cancellation, expiry and programme versions.

ALTER TABLE programmes
    ADD COLUMN min_age    INTEGER CHECK (min_age >= 0),
    ADD COLUMN max_age    INTEGER CHECK (max_age >= 0),
    ADD COLUMN version    INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN supersedes UUID REFERENCES programmes;

CREATE TABLE prescribers (
    prescriber_id UUID PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Personal data lives here and nowhere else. Erasure blanks the identity columns and keeps the
-- row (and its pseudonym) so that the booklet, its events and every total stay as they were.
CREATE TABLE beneficiaries (
    beneficiary_id UUID PRIMARY KEY,
    prescriber_id  UUID NOT NULL REFERENCES prescribers,
    pseudonym      TEXT NOT NULL,
    given_name     TEXT,
    family_name    TEXT,
    birth_date     DATE,
    email          TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    erased_at      TIMESTAMPTZ,
    CHECK ((erased_at IS NULL) = (given_name IS NOT NULL AND family_name IS NOT NULL AND birth_date IS NOT NULL))
);
CREATE INDEX beneficiaries_prescriber ON beneficiaries (prescriber_id);

ALTER TABLE booklets
    ADD COLUMN status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    ADD COLUMN prescriber_id  UUID REFERENCES prescribers,
    ADD COLUMN beneficiary_id UUID UNIQUE REFERENCES beneficiaries,
    ADD COLUMN distributed_on DATE,
    ADD COLUMN cancel_reason  TEXT;
CREATE INDEX booklets_prescriber ON booklets (prescriber_id);

ALTER TABLE passes DROP CONSTRAINT passes_status_check;
ALTER TABLE passes ADD CONSTRAINT passes_status_check CHECK (status IN ('active', 'cancelled', 'expired'));
