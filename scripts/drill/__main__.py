"""`python -m scripts.drill`: see scripts/drill/run.py."""

import sys

from scripts.drill.run import main

sys.exit(main())
