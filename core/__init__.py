"""core: the pure domain every other package shares.

Quality control (`core.qc`), rollups as mergeable partials (`core.rollups`),
indicators (`core.indicators`), unit conversion (`core.units`), the settings
(`core.settings`) and the user-facing error (`core.errors`).  Vectorised NumPy on
arrays, with no I/O: no database, no processes, no sockets; it imports no other
package of ours (tests/test_layout.py holds it to that).
"""
