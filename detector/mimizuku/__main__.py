"""`python -m mimizuku` runs the command line."""
import sys

from mimizuku.cli import main

sys.exit(main())
