-- HTTP push (issue 14, item 3): a device posts its readings to POST /v1/ingest/{device}.
--
-- A post without times (a SenML time below 2**28, a plain object without "time") is
-- stamped when it arrives.  HTTP has no packet id to know a retry by, so a client may
-- send an Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header): the first
-- post under a key keeps the time it was stamped with here, and a retry of the same
-- body under that key gets the same time again, so the readings' key (series, time)
-- absorbs it.  A key is forgotten a day after its first use (the push path deletes
-- what has expired as it goes).
CREATE TABLE http_push_keys (
    device_id  text NOT NULL REFERENCES devices (id) ON UPDATE CASCADE ON DELETE CASCADE,
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    digest     bytea NOT NULL,
    anchor     double precision NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, key)
);
CREATE INDEX http_push_keys_created_idx ON http_push_keys (created_at);
GRANT SELECT, INSERT, DELETE ON http_push_keys TO smartby_writer;

-- A device owner who proves the device's secret sees its last rejected payloads
-- (GET /v1/devices/{id}/health with the secret, item 7).  No role reads quarantined
-- payloads directly (migration 0011); this function hands out one device's last few,
-- and only the registrar, which checks the secret (it reads secret_hash already), may
-- call it.
CREATE FUNCTION smartby_device_rejections(device text, how_many integer)
RETURNS TABLE (received_at timestamptz, topic text, reason text, detail text, payload bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT q.received_at, q.topic, q.reason, q.detail, q.payload
    FROM quarantine q
    WHERE q.device_id = device
    ORDER BY q.received_at DESC, q.id DESC
    LIMIT least(greatest(how_many, 0), 100)
$$;
REVOKE ALL ON FUNCTION smartby_device_rejections(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smartby_device_rejections(text, integer) TO smartby_registrar;

-- the health route reads a device's last rejections (and its counts) by device
CREATE INDEX quarantine_device_idx ON quarantine (device_id, received_at);
