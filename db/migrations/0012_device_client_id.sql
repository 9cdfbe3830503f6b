-- A device's MQTT client id.  The broker binds each device's account to one client id
-- (Mosquitto's dynamic security plugin, `clientid`), so its credentials cannot be used
-- under another id, such as the ingest worker's.  Real firmware picks its own (Tasmota
-- `DVES_XXXXXX`, ESPHome `<node>-<mac>`), so it can be set per device; NULL means the
-- device id.  Printable ASCII without spaces, and never a platform account's
-- (`smartby-...`), so no device can be bound to the worker's session.
ALTER TABLE devices ADD COLUMN client_id text
    CHECK (client_id ~ '^[!-~]{1,128}$' AND client_id !~ '^smartby-');

-- One device per client id, counting the default (the device id) too.
CREATE UNIQUE INDEX devices_client_id_key ON devices ((coalesce(client_id, id)));

-- The broker also cares about the client id (migration 0004's trigger).
DROP TRIGGER devices_registry_changed ON devices;
CREATE TRIGGER devices_registry_changed
AFTER INSERT OR DELETE OR UPDATE OF id, status, secret_hash, client_id ON devices
FOR EACH ROW EXECUTE FUNCTION smartby_registry_changed();

-- The services' roles (migration 0011) see the new column as they see the others: the
-- open reads and ingest may read it (it is no secret: the device sends it in clear in
-- every CONNECT); the registrar, which registers devices, writes it with the INSERT
-- it already has.
GRANT SELECT (client_id) ON devices TO smartby_reader, smartby_writer;
