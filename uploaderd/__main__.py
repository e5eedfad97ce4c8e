"""``python -m uploaderd`` runs the command line."""

import sys

from uploaderd.cli.main import main

sys.exit(main())
