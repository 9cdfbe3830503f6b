-- A redelivered MQTT message without a time must get the time it got when it was
-- committed, or the readings' key cannot absorb it (ingest/redelivery.py has the
-- argument, from MQTT v5 §4.4 and §3.3.4).  Both tables are written in the
-- transaction of an ingest batch.

-- Messages with a packet id committed under each ingest worker's MQTT client id.
CREATE TABLE ingest_sessions (
    client_id text PRIMARY KEY,
    committed bigint NOT NULL CHECK (committed >= 0)
);

-- The time-less messages of each committed batch, one row per batch, as little-endian
-- arrays with one element per message.  Message i was the ordinals[i]-th of the
-- batch's `delivered` messages, so the session's count as of it is
-- last_seq - delivered + ordinals[i].  A row is deleted once 32,768 more messages
-- were committed: no redelivery can match it then.
CREATE TABLE ingest_deliveries (
    client_id  text NOT NULL,
    last_seq   bigint NOT NULL,   -- ingest_sessions.committed after the batch
    delivered  integer NOT NULL,  -- the batch's messages with a packet id
    packet_ids bytea NOT NULL,    -- uint16 each
    ordinals   bytea NOT NULL,    -- uint32 each
    digests    bytea NOT NULL,    -- 16 bytes each: BLAKE2b of topic and payload
    anchors    bytea NOT NULL,    -- float64 each: epoch seconds its times counted from
    PRIMARY KEY (client_id, last_seq)
);
