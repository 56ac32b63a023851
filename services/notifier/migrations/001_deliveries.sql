CREATE TABLE webhook_endpoints (
    endpoint_id     UUID PRIMARY KEY,
    site_id         UUID NOT NULL,
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled_at     TIMESTAMPTZ,
    disabled_reason TEXT
);
CREATE INDEX webhook_endpoints_site ON webhook_endpoints (site_id) WHERE disabled_at IS NULL;

-- One row per statement and channel. The id is derived from both, so however often the
-- statement event is redelivered, the notification keeps one webhook-id (receivers dedupe on it).
CREATE TABLE deliveries (
    notification_id TEXT PRIMARY KEY,
    statement_id    UUID NOT NULL,
    site_id         UUID NOT NULL,
    endpoint_id     UUID NOT NULL REFERENCES webhook_endpoints,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_site ON deliveries (site_id, created_at);

CREATE TABLE delivery_attempts (
    notification_id TEXT NOT NULL REFERENCES deliveries,
    attempt         INTEGER NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    outcome         TEXT NOT NULL,
    PRIMARY KEY (notification_id, attempt)
);
