"""Flow modules keep their annotations evaluated.

A worker or `serve` loads a flow from its file and builds the parameter model
from the signature; with `from __future__ import annotations` the names in it
(`datetime`, the pydantic models) cannot be resolved there and every run from a
deployment fails before it starts (the in-process tests would not notice).
"""

from __future__ import annotations

from pathlib import Path

import pytest

FLOWS = sorted((Path(__file__).resolve().parents[2] / "flows").glob("*.py"))


@pytest.mark.parametrize("path", FLOWS, ids=[p.name for p in FLOWS])
def test_flow_module_does_not_postpone_annotations(path):
    assert "from __future__ import annotations" not in path.read_text()
