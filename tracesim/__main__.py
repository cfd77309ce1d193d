"""``python -m tracesim``: the ``tracesim`` command."""
from __future__ import annotations

import sys

from tracesim.tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
