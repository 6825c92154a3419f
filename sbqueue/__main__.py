"""``python -m sbqueue`` is the ``sbqueue`` command."""

import sys

from .cli import main

sys.exit(main())
