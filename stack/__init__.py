"""stack: the embedded processes behind ``smartby up``, the tests and the benchmarks.

A private PostgreSQL cluster (`stack.postgres`) and a private Mosquitto
(`stack.mosquitto`), each a child process of its caller on loopback only
(`stack.process`), on free ports (`stack.ports`); and the record ``smartby up``
leaves while it runs, so that other commands find its services (`stack.running`).
Only the composition root (``smartby/``), the test fixtures and ``bench/`` use it:
the packages below them take a database URL and a broker address, wherever those
come from.
"""
