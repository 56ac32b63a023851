-- The redemption service's own projection of the issuer's events.
CREATE TABLE programmes (
    programme_id     UUID PRIMARY KEY,
    face_value_cents BIGINT NOT NULL,
    valid_from       DATE NOT NULL,
    valid_until      DATE NOT NULL,
    grace_days       INTEGER NOT NULL,
    learning_paths   TEXT[] NOT NULL,
    funders          JSONB NOT NULL
);

CREATE TABLE sites (
    site_id UUID PRIMARY KEY,
    name    TEXT NOT NULL
);

CREATE TABLE qualifications (
    site_id      UUID NOT NULL,
    programme_id UUID NOT NULL,
    PRIMARY KEY (site_id, programme_id)
);

CREATE TABLE passes (
    pass_id      UUID PRIMARY KEY,
    code         TEXT NOT NULL UNIQUE,
    programme_id UUID NOT NULL,
    booklet_id   UUID NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled'))
);

-- Clearing windows. `current_window` is one row, read and updated under the window lock (an
-- advisory lock, see pg_store.WINDOW_LOCK): a close waits for in-flight redemptions and later
-- ones see the next window (invariant 5).
CREATE TABLE windows (
    window_id INTEGER PRIMARY KEY,
    opened_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ
);
CREATE TABLE current_window (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    window_id INTEGER NOT NULL REFERENCES windows,
    opened_at TIMESTAMPTZ NOT NULL
);
INSERT INTO windows (window_id, opened_at) VALUES (1, now());
INSERT INTO current_window (window_id, opened_at) VALUES (1, now());

CREATE TABLE redemptions (
    redemption_id    UUID PRIMARY KEY,
    pass_id          UUID NOT NULL REFERENCES passes,
    site_id          UUID NOT NULL,
    programme_id     UUID NOT NULL,
    window_id        INTEGER NOT NULL REFERENCES windows,
    face_value_cents BIGINT NOT NULL,
    learning_path    TEXT NOT NULL,
    workshop_date    DATE NOT NULL,
    duration_minutes INTEGER NOT NULL,
    accepted_at      TIMESTAMPTZ NOT NULL,
    reversed         BOOLEAN NOT NULL DEFAULT false
);
-- Single use, enforced by the database whatever the concurrency (invariant 3). A reversed
-- redemption frees its pass.
CREATE UNIQUE INDEX one_live_redemption_per_pass ON redemptions (pass_id) WHERE NOT reversed;
CREATE INDEX redemptions_site ON redemptions (site_id, accepted_at);

CREATE TABLE reversals (
    reversal_id   UUID PRIMARY KEY,
    redemption_id UUID NOT NULL UNIQUE REFERENCES redemptions,
    window_id     INTEGER NOT NULL REFERENCES windows,
    reason        TEXT NOT NULL,
    reversed_by   TEXT NOT NULL,
    reversed_at   TIMESTAMPTZ NOT NULL
);
