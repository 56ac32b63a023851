-- Coverage: what funders were asked for and paid (from the issuer's events), and what each
-- statement owes per programme and funder (written with the statement, in its transaction).
CREATE TABLE funder_dues (
    order_id      UUID NOT NULL,
    programme_id  UUID NOT NULL,
    funder_id     UUID NOT NULL,
    amount_cents  BIGINT NOT NULL,
    PRIMARY KEY (order_id, funder_id)
);

CREATE TABLE funder_payments (
    payment_id    UUID PRIMARY KEY,
    order_id      UUID NOT NULL,
    programme_id  UUID NOT NULL,
    funder_id     UUID NOT NULL,
    amount_cents  BIGINT NOT NULL
);

CREATE TABLE statement_parts (
    statement_id  UUID NOT NULL,
    window_id     INTEGER NOT NULL,
    site_id       UUID NOT NULL,
    programme_id  UUID NOT NULL,
    funder_id     UUID NOT NULL,
    amount_cents  BIGINT NOT NULL,
    PRIMARY KEY (statement_id, programme_id, funder_id)
);
