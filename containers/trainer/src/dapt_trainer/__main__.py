"""`python -m dapt_trainer`, as the Batch job definitions run it under torchrun."""

import sys

from dapt_trainer.cli import main

sys.exit(main())
