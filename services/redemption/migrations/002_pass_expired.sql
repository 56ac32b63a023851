-- The issuer now announces expiry (PassExpired): the projection records it.
ALTER TABLE passes DROP CONSTRAINT passes_status_check;
ALTER TABLE passes ADD CONSTRAINT passes_status_check CHECK (status IN ('active', 'cancelled', 'expired'));
