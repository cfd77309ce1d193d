import sys

from tracesim.tools.cli import main

sys.exit(main())
