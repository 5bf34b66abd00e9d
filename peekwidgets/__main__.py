"""``python -m peekwidgets``: the ``peekwidgets`` command."""

import sys

from peekwidgets.cli import main

sys.exit(main())
