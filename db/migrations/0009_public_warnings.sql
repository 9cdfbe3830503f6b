-- Public air-quality warnings (core/warnings.py has the rules): an episode per station
-- that reached "poor" or worse, and every CAP 1.2 message issued for it.  Written by
-- the ingest workers' indicator thread (ingest/warnings.py), read by the API's feed.

-- How far each station's hourly index has been looked at: hours before checked_until
-- are history, so re-running the job (or two workers) issues nothing twice.
CREATE TABLE warning_stations (
    site_id       text PRIMARY KEY REFERENCES sites (id),
    checked_until timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per episode; cleared_at is null while it lasts.
CREATE TABLE warning_episodes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     text NOT NULL REFERENCES sites (id),
    onset       timestamptz NOT NULL,   -- start of its first poor-or-worse hour
    last_poor   timestamptz NOT NULL,   -- start of its latest poor-or-worse hour
    level       smallint NOT NULL CHECK (level BETWEEN 4 AND 6),  -- the level last announced
    cleared_at  timestamptz,            -- start of the hour that cleared it (or of the withdrawal)
    UNIQUE (site_id, onset)
);
-- at most one open episode per station
CREATE UNIQUE INDEX warning_episodes_open_idx ON warning_episodes (site_id) WHERE cleared_at IS NULL;

-- Every message as issued: a CAP document is never changed once sent (CAP 1.2 §3.2.1
-- identifier, sent); a later message references it instead.
CREATE TABLE warning_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identifier   text NOT NULL UNIQUE,
    episode_id   bigint NOT NULL REFERENCES warning_episodes (id),
    site_id      text NOT NULL REFERENCES sites (id),
    msg_type     text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    event        text NOT NULL CHECK (event IN ('alert', 'update', 'clear', 'withdraw')),
    sent         timestamptz NOT NULL,
    hour         timestamptz NOT NULL,  -- the hourly index the message is about
    level        smallint NOT NULL CHECK (level BETWEEN 1 AND 6),
    dominant     text,
    headline_nb  text NOT NULL,
    headline_en  text NOT NULL,
    summary_nb   text NOT NULL,
    summary_en   text NOT NULL,
    cap          text NOT NULL,
    published_at timestamptz          -- when the MQTT broker acknowledged it
);
CREATE INDEX warning_messages_sent_idx ON warning_messages (sent);
CREATE INDEX warning_messages_unpublished_idx ON warning_messages (id) WHERE published_at IS NULL;
