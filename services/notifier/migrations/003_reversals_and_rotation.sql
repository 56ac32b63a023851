-- Secret rotation keeps every secret whose overlap has not ended, not just the last one: two
-- rotations within an overlap must not cut off a receiver still holding the oldest secret.
CREATE TABLE webhook_retired_secrets (
    endpoint_id UUID        NOT NULL REFERENCES webhook_endpoints,
    secret      TEXT        NOT NULL,
    valid_until TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (endpoint_id, secret)
);
INSERT INTO webhook_retired_secrets (endpoint_id, secret, valid_until)
    SELECT endpoint_id, previous_secret, previous_secret_until FROM webhook_endpoints
    WHERE previous_secret IS NOT NULL AND previous_secret_until IS NOT NULL;
ALTER TABLE webhook_endpoints DROP COLUMN previous_secret, DROP COLUMN previous_secret_until;

-- The notifier's own projection of the redemptions topic: the window each redemption was
-- stamped with. A reversal stamped with a later window was made after its redemption's window
-- had closed (closing a window opens the next in the same transaction), so its amount already
-- stood in an issued statement and is deducted from the reversal's window: the site is told.
CREATE TABLE redemption_windows (
    redemption_id UUID PRIMARY KEY,
    window_id     INTEGER NOT NULL
);

-- Deliveries now tell of three things: a site's statement, a funder's call for funds, or a
-- reversal after close (which has no statement of its own yet: statement_id stays empty).
ALTER TABLE deliveries
    ALTER COLUMN statement_id DROP NOT NULL,
    ADD COLUMN kind        TEXT NOT NULL DEFAULT 'statement'
        CHECK (kind IN ('statement', 'funder_statement', 'reversal')),
    ADD COLUMN reversal_id UUID;
UPDATE deliveries SET kind = 'funder_statement' WHERE funder_id IS NOT NULL;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_subject CHECK (
    (kind = 'reversal') = (reversal_id IS NOT NULL) AND (kind = 'reversal') = (statement_id IS NULL)
);
CREATE INDEX deliveries_reversal ON deliveries (reversal_id) WHERE reversal_id IS NOT NULL;
