"""``python -m stream.transport serve ...`` / ``connect ...``: the WebRTC commands."""

from __future__ import annotations

import sys

from stream.__main__ import drop_working_directory

drop_working_directory()  # before the imports below: see stream/__main__.py

from .cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
