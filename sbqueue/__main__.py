"""``python -m sbqueue`` is the ``sbqueue`` command."""

import sys

from sbqueue.cli.app import main

sys.exit(main())
