"""``python -m cmot``: the ``cmot`` command line (see :mod:`cmot.cli`)."""

import sys

from .cli import main

sys.exit(main())
