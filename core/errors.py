"""The one base class of errors a user can act on.

The CLI prints any `SmartbyError` as one line and exits non-zero; anything else
is a bug and keeps its traceback.
"""


class SmartbyError(Exception):
    """An error whose message alone tells the user what is wrong and what to do."""
