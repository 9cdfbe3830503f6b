"""`smartby up` fixtures for the composition root's tests."""

from tests.fixtures.up import data_dir

__all__ = ["data_dir"]
