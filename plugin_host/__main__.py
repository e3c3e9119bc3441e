"""``python -m plugin_host``: the same as the ``plugin-host`` command."""

import sys

from .cli import main

sys.exit(main())
