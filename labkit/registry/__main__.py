"""`python -m labkit.registry` is `labkit-registry`."""

import sys

from .main import main

sys.exit(main())
