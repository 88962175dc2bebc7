"""``python -m mimizuku.serve``: the resident scorer (what the systemd unit runs)."""
import sys

from mimizuku.serve.command import main

sys.exit(main())
