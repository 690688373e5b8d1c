import sys

from imaginize.entry import main

sys.exit(main())
