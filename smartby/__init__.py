"""smartby: the command line that composes core, db, stack, ingest, api, devices and
dashboards.

This package is the composition root: it may import every other package; none of
them imports it.  It starts or finds the embedded stack (`stack`, `smartby.locate`)
and hands the packages below the database URL and broker address to use.
"""
