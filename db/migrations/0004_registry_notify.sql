-- Tell listeners (the embedded stack's supervisor, which owns the broker's password
-- file) that the device registry changed, so the broker can be reloaded at once
-- instead of on a polling interval.  The payload is the device id.
CREATE FUNCTION smartby_registry_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smartby_registry', coalesce(NEW.id, OLD.id));
    RETURN NULL;
END
$$;

-- Only changes the broker cares about: who exists, who is active, which secret.
CREATE TRIGGER devices_registry_changed
AFTER INSERT OR DELETE OR UPDATE OF id, status, secret_hash ON devices
FOR EACH ROW EXECUTE FUNCTION smartby_registry_changed();
