"""``python -m scarlet.tunas``: see :mod:`scarlet.tunas.cli`."""

import sys

from scarlet.tunas.cli import main

sys.exit(main())
