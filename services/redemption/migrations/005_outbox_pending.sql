-- redeem_passes lists its outbox rows in outbox_pending (plumbing migration
-- 000_plumbing_2_outbox_pending.sql: the relay no longer marks published rows in the outbox).
-- The function is otherwise the one of migration 003, checks and order unchanged.
CREATE OR REPLACE FUNCTION redeem_passes(
    p_codes TEXT[], p_sites UUID[], p_learning_paths TEXT[], p_workshop_dates DATE[],
    p_durations INTEGER[], p_redemption_ids UUID[], p_event_ids UUID[], p_today DATE,
    p_at TIMESTAMPTZ, p_at_json TEXT, p_topic TEXT, p_producer TEXT, p_window_lock BIGINT
)
RETURNS TABLE (n INTEGER, outcome TEXT, window_id INTEGER, face_value_cents BIGINT, valid_from DATE,
               valid_until DATE, learning_paths TEXT[])
LANGUAGE plpgsql VOLATILE
-- As migration 004 set it: one generic plan per connection (CREATE OR REPLACE resets it).
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock_shared(p_window_lock);
    RETURN QUERY
    -- The event rides in the same transaction (transactional outbox), keyed by site id, in the
    -- bytes Envelope(PassRedeemed(...)).to_bytes() writes (field order, compact separators).
    WITH req AS (
        SELECT * FROM unnest(p_codes, p_sites, p_learning_paths, p_workshop_dates, p_durations,
                             p_redemption_ids, p_event_ids) WITH ORDINALITY
                      AS r (code, site_id, learning_path, workshop_date, duration, redemption_id, event_id, n)
    ), judged AS (
        SELECT r.*, s.pass_id, s.programme_id, g.valid_from, g.valid_until, g.learning_paths, g.face_value_cents,
               g.funders_json,
               CASE
                   WHEN g.programme_id IS NULL THEN 'unknown-pass'
                   WHEN s.status = 'cancelled' THEN 'pass-cancelled'
                   WHEN p_today < g.valid_from THEN 'pass-not-yet-valid'
                   WHEN s.status = 'expired' OR p_today > g.valid_until + g.grace_days THEN 'pass-expired'
                   WHEN NOT EXISTS (SELECT 1 FROM qualifications q
                                     WHERE q.site_id = r.site_id AND q.programme_id = s.programme_id)
                       THEN 'site-not-qualified'
                   WHEN NOT (r.learning_path = ANY (g.learning_paths)) THEN 'unknown-learning-path'
               END AS refused
          FROM req r LEFT JOIN passes s ON s.code = r.code LEFT JOIN programmes g ON g.programme_id = s.programme_id
    ), inserted AS (
        INSERT INTO redemptions (redemption_id, pass_id, site_id, programme_id, window_id, face_value_cents,
                                 learning_path, workshop_date, duration_minutes, accepted_at)
        SELECT j.redemption_id, j.pass_id, j.site_id, j.programme_id, w.window_id, j.face_value_cents,
               j.learning_path, j.workshop_date, j.duration, p_at
          FROM judged j CROSS JOIN current_window w WHERE j.refused IS NULL ORDER BY j.pass_id, j.n
        ON CONFLICT (pass_id) WHERE NOT reversed DO NOTHING
        RETURNING redemptions.redemption_id, redemptions.window_id
    ), published AS (
        INSERT INTO outbox (event_id, topic, key, partition, body)
        SELECT j.event_id, p_topic, j.site_id::text, NULL, convert_to(
            '{"event_id":"' || j.event_id || '","type":"PassRedeemed","schema_version":1,"occurred_at":"'
            || p_at_json || '","producer":' || to_json(p_producer) || ',"key":"' || j.site_id
            || '","payload":{"redemption_id":"' || j.redemption_id || '","pass_id":"' || j.pass_id
            || '","site_id":"' || j.site_id || '","programme_id":"' || j.programme_id
            || '","window_id":' || i.window_id || ',"face_value_cents":' || j.face_value_cents
            || ',"funders":' || j.funders_json || ',"learning_path":' || to_json(j.learning_path)
            || ',"workshop_date":"' || to_char(j.workshop_date, 'YYYY-MM-DD') || '","accepted_at":"'
            || p_at_json || '"}}', 'UTF8')
          FROM judged j JOIN inserted i USING (redemption_id) ORDER BY j.n
        ON CONFLICT (event_id) DO NOTHING
        RETURNING outbox.seq
    ), pending AS (
        INSERT INTO outbox_pending (seq) SELECT seq FROM published
    )
    SELECT j.n::int, coalesce(j.refused, CASE WHEN i.redemption_id IS NULL THEN 'already-redeemed' ELSE 'accepted' END),
           i.window_id, j.face_value_cents, j.valid_from, j.valid_until, j.learning_paths
      FROM judged j LEFT JOIN inserted i USING (redemption_id) ORDER BY j.n;
END
$$;
