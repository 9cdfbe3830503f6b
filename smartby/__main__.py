"""``python -m smartby`` is the ``smartby`` command."""

from smartby.cli import main

if __name__ == "__main__":
    main()
