"""stack: the embedded processes (a private PostgreSQL cluster, a private Mosquitto)."""
