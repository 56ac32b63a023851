-- redeem_passes' query planned once per connection, not at every call (issue 4, P1). PL/pgSQL
-- caches the plan of its RETURN QUERY, but for a parameterised statement Postgres replans it at
-- each call (a "custom plan") as long as its estimated cost beats the generic plan's, and with
-- the arrays' real sizes a batch of a few requests always does: the planning of the whole CTE
-- (lookups, inserts, the outbox rows) then ran for every batch. Measured here, batches of 4 from
-- 4 connections: 291-303 us of backend CPU per redemption with the default, 155-171 us with the
-- generic plan; batches of 16: 76 and 73 us (the planner already picked the generic plan). The
-- generic plan looks the passes up by index for any batch size up to the group commit's 64.
-- Plans do not change results: the checks, their order and the unique index decide as before.
ALTER FUNCTION redeem_passes(TEXT[], UUID[], TEXT[], DATE[], INTEGER[], UUID[], UUID[], DATE, TIMESTAMPTZ, TEXT,
                             TEXT, TEXT, BIGINT)
    SET plan_cache_mode = force_generic_plan;
