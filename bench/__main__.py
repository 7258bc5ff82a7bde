"""`python -m bench --database sqlite|postgresql --rounds 3`: see bench/README.md."""

import sys

from bench.run import main

sys.exit(main())
