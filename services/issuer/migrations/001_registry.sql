CREATE TABLE funders (
    funder_id  UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE programmes (
    programme_id       UUID PRIMARY KEY,
    name               TEXT NOT NULL,
    territory          TEXT NOT NULL,
    face_value_cents   BIGINT NOT NULL CHECK (face_value_cents > 0),
    passes_per_booklet INTEGER NOT NULL CHECK (passes_per_booklet > 0),
    valid_from         DATE NOT NULL,
    valid_until        DATE NOT NULL,
    grace_days         INTEGER NOT NULL CHECK (grace_days >= 0),
    learning_paths     TEXT[] NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE programme_funders (
    programme_id UUID NOT NULL REFERENCES programmes,
    funder_id    UUID NOT NULL REFERENCES funders,
    position     INTEGER NOT NULL,
    share_bp     INTEGER NOT NULL CHECK (share_bp > 0 AND share_bp <= 10000),
    PRIMARY KEY (programme_id, funder_id),
    UNIQUE (programme_id, position)
);

-- The site registry keeps the payout and contact details that never travel on Kafka.
CREATE TABLE sites (
    site_id       UUID PRIMARY KEY,
    name          TEXT NOT NULL,
    siret         TEXT NOT NULL UNIQUE,
    iban          TEXT NOT NULL,
    bic           TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE qualifications (
    site_id      UUID NOT NULL REFERENCES sites,
    programme_id UUID NOT NULL REFERENCES programmes,
    granted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, programme_id)
);

CREATE TABLE orders (
    order_id               UUID PRIMARY KEY,
    programme_id           UUID NOT NULL REFERENCES programmes,
    booklets               INTEGER NOT NULL CHECK (booklets > 0),
    face_value_total_cents BIGINT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('awaiting_funds', 'active')),
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    activated_at           TIMESTAMPTZ
);

CREATE TABLE order_dues (
    order_id     UUID NOT NULL REFERENCES orders,
    funder_id    UUID NOT NULL REFERENCES funders,
    position     INTEGER NOT NULL,
    amount_cents BIGINT NOT NULL,
    PRIMARY KEY (order_id, funder_id)
);

-- One payment per funder and order: the primary key refuses a second one whatever the race.
CREATE TABLE payments (
    payment_id     UUID NOT NULL UNIQUE,
    order_id       UUID NOT NULL REFERENCES orders,
    funder_id      UUID NOT NULL REFERENCES funders,
    amount_cents   BIGINT NOT NULL CHECK (amount_cents > 0),
    bank_reference TEXT NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, funder_id)
);

CREATE TABLE booklets (
    booklet_id   UUID PRIMARY KEY,
    order_id     UUID NOT NULL REFERENCES orders,
    programme_id UUID NOT NULL REFERENCES programmes,
    number       INTEGER NOT NULL,
    UNIQUE (order_id, number)
);

CREATE TABLE passes (
    pass_id    UUID PRIMARY KEY,
    booklet_id UUID NOT NULL REFERENCES booklets,
    code       TEXT NOT NULL UNIQUE,
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled'))
);
CREATE INDEX passes_booklet ON passes (booklet_id);
