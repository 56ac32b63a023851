-- One round trip per redemption (issue 4, P1): the lookup, the rules, the window stamp under the
-- shared window lock, the redemption and its outbox row, in one call. The API maps the outcome to
-- the same problem bodies as services/redemption/domain/rules.py; the order of the checks below is
-- the order of rules.check_redeemable, and tests/integration/test_redemption.py checks each one.

-- A programme's funders in the exact bytes pydantic writes for `PassRedeemed.funders` (compact,
-- in the programme's order), computed once per programme rather than once per redemption.
CREATE FUNCTION compact_funders(funders JSONB) RETURNS TEXT
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT '[' || string_agg(
        '{"funder_id":"' || (f ->> 'funder_id') || '","share_bp":' || (f ->> 'share_bp') || '}', ','
        ORDER BY n
    ) || ']'
    FROM jsonb_array_elements(funders) WITH ORDINALITY AS t (f, n)
$$;
ALTER TABLE programmes ADD COLUMN funders_json TEXT GENERATED ALWAYS AS (compact_funders(funders)) STORED;

-- `outcome` is 'accepted' or the refusal's slug (rules.py); on a refusal, the pass's terms come
-- back so the API can word the problem detail as before. `at_json` is `at` as the envelope writes
-- it (pydantic: ISO 8601, Z, microseconds only when non-zero), chosen by the caller's clock.
CREATE FUNCTION redeem_pass(
    p_code TEXT, p_site UUID, p_today DATE, p_learning_path TEXT, p_workshop_date DATE,
    p_duration_minutes INTEGER, p_at TIMESTAMPTZ, p_at_json TEXT, p_redemption_id UUID,
    p_event_id UUID, p_topic TEXT, p_producer TEXT, p_window_lock BIGINT,
    OUT outcome TEXT, OUT window_id INTEGER, OUT face_value_cents BIGINT, OUT valid_from DATE,
    OUT valid_until DATE, OUT learning_paths TEXT[]
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    p RECORD;
BEGIN
    SELECT s.pass_id, s.programme_id, s.status, g.valid_from, g.valid_until, g.grace_days,
           g.learning_paths, g.face_value_cents, g.funders_json,
           EXISTS (SELECT 1 FROM qualifications q
                   WHERE q.site_id = p_site AND q.programme_id = s.programme_id) AS qualified
      INTO p
      FROM passes s JOIN programmes g USING (programme_id)
     WHERE s.code = p_code;
    IF NOT FOUND THEN
        outcome := 'unknown-pass';
        RETURN;
    END IF;
    face_value_cents := p.face_value_cents;
    valid_from := p.valid_from;
    valid_until := p.valid_until;
    learning_paths := p.learning_paths;
    outcome := CASE
        WHEN p.status = 'cancelled' THEN 'pass-cancelled'
        WHEN p_today < p.valid_from THEN 'pass-not-yet-valid'
        WHEN p.status = 'expired' OR p_today > p.valid_until + p.grace_days THEN 'pass-expired'
        WHEN NOT p.qualified THEN 'site-not-qualified'
        WHEN NOT (p_learning_path = ANY (p.learning_paths)) THEN 'unknown-learning-path'
    END;
    IF outcome IS NOT NULL THEN
        RETURN;
    END IF;
    -- The window lock, shared until commit (invariant 5): a close waits for this transaction, so
    -- its markers follow this outbox row. The window is read by the next statement, whose
    -- snapshot is taken once the lock is held, so it sees the window a close has just opened.
    PERFORM pg_advisory_xact_lock_shared(p_window_lock);
    INSERT INTO redemptions (redemption_id, pass_id, site_id, programme_id, window_id, face_value_cents,
                             learning_path, workshop_date, duration_minutes, accepted_at)
    SELECT p_redemption_id, p.pass_id, p_site, p.programme_id, w.window_id, p.face_value_cents,
           p_learning_path, p_workshop_date, p_duration_minutes, p_at
      FROM current_window w
    -- Single use: the partial unique index decides, whatever the concurrency (invariant 3).
    ON CONFLICT (pass_id) WHERE NOT reversed DO NOTHING
    RETURNING redemptions.window_id INTO window_id;
    IF window_id IS NULL THEN
        outcome := 'already-redeemed';
        RETURN;
    END IF;
    -- The event in the same transaction (transactional outbox), keyed by site id; its bytes are
    -- those Envelope(PassRedeemed(...)).to_bytes() writes (field order, compact separators).
    INSERT INTO outbox (event_id, topic, key, partition, body)
    VALUES (p_event_id, p_topic, p_site::text, NULL, convert_to(
        '{"event_id":"' || p_event_id || '","type":"PassRedeemed","schema_version":1,"occurred_at":"'
        || p_at_json || '","producer":' || to_json(p_producer) || ',"key":"' || p_site
        || '","payload":{"redemption_id":"' || p_redemption_id || '","pass_id":"' || p.pass_id
        || '","site_id":"' || p_site || '","programme_id":"' || p.programme_id
        || '","window_id":' || window_id || ',"face_value_cents":' || p.face_value_cents
        || ',"funders":' || p.funders_json || ',"learning_path":' || to_json(p_learning_path)
        || ',"workshop_date":"' || to_char(p_workshop_date, 'YYYY-MM-DD') || '","accepted_at":"' || p_at_json || '"}}',
        'UTF8'))
    ON CONFLICT (event_id) DO NOTHING;
    outcome := 'accepted';
END
$$;

-- The same for a batch of requests gathered by the API (group commit): one statement and one
-- commit for all of them, each request's outcome on its own row (`n` is its 1-based position).
-- Each request goes through redeem_pass, so a batch decides exactly what one-by-one calls would;
-- two requests for one pass in a batch: the first is accepted, the second is already-redeemed.
CREATE FUNCTION redeem_passes(
    p_codes TEXT[], p_sites UUID[], p_learning_paths TEXT[], p_workshop_dates DATE[],
    p_durations INTEGER[], p_redemption_ids UUID[], p_event_ids UUID[], p_today DATE,
    p_at TIMESTAMPTZ, p_at_json TEXT, p_topic TEXT, p_producer TEXT, p_window_lock BIGINT
)
RETURNS TABLE (n INTEGER, outcome TEXT, window_id INTEGER, face_value_cents BIGINT, valid_from DATE,
               valid_until DATE, learning_paths TEXT[])
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_codes), 0) LOOP
        n := i;
        SELECT r.outcome, r.window_id, r.face_value_cents, r.valid_from, r.valid_until, r.learning_paths
          INTO outcome, window_id, face_value_cents, valid_from, valid_until, learning_paths
          FROM redeem_pass(p_codes[i], p_sites[i], p_today, p_learning_paths[i], p_workshop_dates[i],
                           p_durations[i], p_at, p_at_json, p_redemption_ids[i], p_event_ids[i], p_topic,
                           p_producer, p_window_lock) AS r;
        RETURN NEXT;
    END LOOP;
END
$$;
