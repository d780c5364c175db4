import sys
from pathlib import Path

# `tests.factories` and the top-level Prefect packages (flows/, tasks/, blocks/)
# import from the repository root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
