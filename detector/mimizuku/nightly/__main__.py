"""``python -m mimizuku.nightly {retrain,rollback,report} ...``: the nightly job's commands."""
import sys

from mimizuku.nightly.cli import main

sys.exit(main())
