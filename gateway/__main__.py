"""``python -m gateway`` -> the poolgate command."""

import sys

from .cli import main

sys.exit(main())
