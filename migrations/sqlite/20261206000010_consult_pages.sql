-- API v1 (issue 14): a clinician's consults are listed newest first, by the
-- clinician in them (keyset pagination on (requested_ms, id)).
CREATE INDEX consults_by_clinician ON consults (clinician_id, requested_ms);
