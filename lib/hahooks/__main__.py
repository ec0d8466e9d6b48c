import sys

from hahooks.cli import main

sys.exit(main())
