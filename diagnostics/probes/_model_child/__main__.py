"""`python -m diagnostics.probes._model_child REQUEST_JSON | layout CKPT`."""

import sys

from .runner import main

sys.exit(main())
