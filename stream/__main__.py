"""``python -m stream``: the ``remotemedia`` command.

``python -m`` puts the working directory first on ``sys.path``, so a ``media_nodes.py`` or a
module a manifest names, lying in whatever directory the command runs in, would be imported in
place of the real one. ``drop_working_directory()`` takes it off before anything else is imported
(``python -P`` and the ``remotemedia`` script never add it). What ``python -m`` imports before this
file runs, the ``stream`` package and numpy, it still finds there first: in an untrusted
directory, run ``remotemedia`` or ``python -P -m stream``.
"""

import os
import sys


def drop_working_directory() -> None:
    """Remove the entry ``python -m`` put first on ``sys.path`` when it is the working directory.

    Kept when this package itself was imported from there (a source checkout run in place), since
    the package's own siblings (``media_nodes``) are then found only through it.
    """
    if sys.flags.safe_path or not sys.path:
        return
    cwd = os.path.realpath(os.getcwd())
    if os.path.realpath(sys.path[0] or ".") != cwd:
        return
    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.realpath(home) != cwd:
        del sys.path[0]


if __name__ == "__main__":
    drop_working_directory()
    from stream.cli import main

    sys.exit(main())
