"""``python -m stream.transport serve ...`` / ``connect ...``: the WebRTC commands."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
