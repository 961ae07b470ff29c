"""``python -m pilothouse.cli``: the ``pilothouse`` command."""

import sys

from pilothouse.cli import main

sys.exit(main())
