-- Per-site reimbursement ledgers: one line per redemption (+) or reversal (−), with the
-- partition it arrived on, since a window closes partition by partition.
CREATE TABLE ledger_lines (
    ref_id        UUID PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('redemption', 'reversal')),
    site_id       UUID NOT NULL,
    pass_id       UUID NOT NULL,
    programme_id  UUID NOT NULL,
    window_id     INTEGER NOT NULL,
    amount_cents  BIGINT NOT NULL,
    funders       JSONB NOT NULL,
    at            TIMESTAMPTZ NOT NULL,
    partition     INTEGER NOT NULL
);
CREATE INDEX ledger_lines_window ON ledger_lines (window_id, partition);
CREATE INDEX ledger_lines_site ON ledger_lines (site_id, window_id);

CREATE TABLE closed_partitions (
    window_id       INTEGER NOT NULL,
    partition       INTEGER NOT NULL,
    partition_count INTEGER NOT NULL,
    opened_at       TIMESTAMPTZ NOT NULL,
    closed_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (window_id, partition)
);

-- Issued statements, as issued: `body` is the StatementIssued payload's JSON.
CREATE TABLE statements (
    statement_id UUID PRIMARY KEY,
    window_id    INTEGER NOT NULL,
    site_id      UUID NOT NULL,
    total_cents  BIGINT NOT NULL,
    digest       TEXT NOT NULL,
    body         JSONB NOT NULL,
    UNIQUE (window_id, site_id)
);

CREATE TABLE funder_statements (
    funder_statement_id UUID PRIMARY KEY,
    window_id           INTEGER NOT NULL,
    funder_id           UUID NOT NULL,
    amount_cents        BIGINT NOT NULL,
    digest              TEXT NOT NULL,
    body                JSONB NOT NULL,
    UNIQUE (window_id, funder_id)
);
