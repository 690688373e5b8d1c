import sys

from imaginize.cli.entry import main

sys.exit(main())
