import os
import sys

# tests import their helpers as a plain module
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "tests"))
collect_ignore = ["seprt/__main__.py", "scripts", "training", "converters", "android_demo", "build", ".venv"]
