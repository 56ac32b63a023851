-- Secret rotation: during the overlap both secrets sign (Standard Webhooks allows several
-- space-separated signatures), so a receiver can switch at its own pace.
ALTER TABLE webhook_endpoints
    ADD COLUMN previous_secret       TEXT,
    ADD COLUMN previous_secret_until TIMESTAMPTZ,
    ADD COLUMN consecutive_failures  INTEGER NOT NULL DEFAULT 0;

-- A site's own e-mail channel (the address the site gave the notifier; it never goes on Kafka).
CREATE TABLE email_channels (
    channel_id  UUID PRIMARY KEY,
    site_id     UUID NOT NULL,
    address     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled_at TIMESTAMPTZ,
    UNIQUE (site_id, address)
);

-- Funders' finance teams: who receives the call for funds (the issuer's funder has no contact).
CREATE TABLE funder_contacts (
    funder_id  UUID PRIMARY KEY,
    address    TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Each funder's share of each site statement, as seen on StatementIssued: the lines of the
-- funder's call for funds (its CSV).
CREATE TABLE funder_statement_lines (
    statement_id UUID NOT NULL,
    funder_id    UUID NOT NULL,
    window_id    INTEGER NOT NULL,
    site_id      UUID NOT NULL,
    amount_cents BIGINT NOT NULL,
    PRIMARY KEY (statement_id, funder_id)
);
CREATE INDEX funder_statement_lines_window ON funder_statement_lines (window_id, funder_id);

-- Deliveries become per channel: a webhook endpoint, a site e-mail (registered channel or the
-- registry's contact e-mail, read from the issuer at send time) or a funder's finance contact.
ALTER TABLE deliveries
    ALTER COLUMN endpoint_id DROP NOT NULL,
    ALTER COLUMN site_id DROP NOT NULL,
    ADD COLUMN channel          TEXT NOT NULL DEFAULT 'webhook'
        CHECK (channel IN ('webhook', 'email')),
    ADD COLUMN email_channel_id UUID REFERENCES email_channels,
    ADD COLUMN funder_id        UUID,
    ADD COLUMN window_id        INTEGER;
CREATE INDEX deliveries_due_channel ON deliveries (channel, next_attempt_at) WHERE status = 'pending';

-- The dead-letter record of a notification whose last attempt failed.
CREATE TABLE notification_dead_letters (
    notification_id TEXT PRIMARY KEY REFERENCES deliveries,
    channel         TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL
);
