import sys

from imaginize.cli import main

sys.exit(main())
