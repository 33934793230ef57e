"""``python -m lambdaworker``: the ``lambdaworker`` command."""

import sys

from .cli import main

sys.exit(main())
