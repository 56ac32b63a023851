-- Plumbing every service keeps in its own schema.

-- Transactional outbox: written in the same transaction as the state change it announces,
-- published in `seq` order by the relay. `body` holds the exact bytes that go on the topic.
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    topic        TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    partition    INTEGER,
    body         BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Processed-event record: the ids a consumer applied, written with the effect. A conflict on
-- insert means the event was already applied and the redelivery changes nothing.
CREATE TABLE processed_events (
    consumer   TEXT        NOT NULL,
    event_id   UUID        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Idempotency keys of the HTTP API: same key and same body hash replays the stored answer.
CREATE TABLE idempotency_keys (
    principal    TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    request_hash TEXT        NOT NULL,
    status_code  INTEGER     NOT NULL,
    response     BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
