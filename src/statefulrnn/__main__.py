"""`python -m statefulrnn ...` runs the `statefulrnn` command."""

import sys

from statefulrnn.cli import main

sys.exit(main())
