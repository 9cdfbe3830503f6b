"""smartby: the command line that composes core, ingest, api, devices and dashboards.

This package is the composition root: it may import every other package; none of
them imports it.
"""
