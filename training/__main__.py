"""`python -m training ...`: see training/train.py."""
import sys

from .train import main

sys.exit(main())
