"""``python -m mimizuku.tools.synth``: the generator's command line (``mimizuku generate``)."""
import sys

from mimizuku.tools.synth.command import main

sys.exit(main())
