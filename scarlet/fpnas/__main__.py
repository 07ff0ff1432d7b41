import sys

from scarlet.fpnas.cli import main

sys.exit(main())
