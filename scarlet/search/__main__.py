"""``python -m scarlet.search``: see :mod:`scarlet.search.cli`."""

import sys

from scarlet.search.cli import main

sys.exit(main())
