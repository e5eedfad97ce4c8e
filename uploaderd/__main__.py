"""``python -m uploaderd`` runs the command line."""

import sys

from uploaderd.cli import main

sys.exit(main())
