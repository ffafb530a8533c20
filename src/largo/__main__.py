import sys

from largo.cli import main

sys.exit(main())
