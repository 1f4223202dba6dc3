"""`python -m agentalign ...`: the `agentalign` command, for environments without its console
script (a source checkout on PYTHONPATH, e.g. a GPU machine's own Python)."""

import sys

from agentalign.cli import main

sys.exit(main())
