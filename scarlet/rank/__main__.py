import sys

from scarlet.rank.cli import main

sys.exit(main())
