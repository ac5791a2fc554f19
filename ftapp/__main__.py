import sys

from ftapp.cli import main

sys.exit(main())
