"""`python -m blazedit_lsp` = `blazedit-lsp`."""

import sys

from .server import main

sys.exit(main())
