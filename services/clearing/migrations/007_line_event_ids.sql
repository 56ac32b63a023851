-- The ledger line records the event it applied: with its primary key (the redemption or reversal
-- id) it is the processed-event record of the ledger's consumer, without a second row per event.
-- Lines applied before this migration have their event ids in processed_events.
ALTER TABLE ledger_lines ADD COLUMN event_id UUID;
