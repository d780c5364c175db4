"""A rollout's strategy parameters hold the core's amount rule, so a run started
from the Prefect UI with `canary: nan%` fails its parameter check, not mid-rollout."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flows._rollout import Strategy


@pytest.mark.parametrize(
    "params",
    [
        {"canary": "nan%"},
        {"canary": "nan"},
        {"batch": "1e400"},
        {"batch": "inf"},
        {"halt_after": "nan%"},
        {"halt_after": "101%"},
        {"canary": ""},
        {"soak_seconds": float("inf")},
        {"soak_seconds": float("nan")},
    ],
)
def test_malformed_strategies_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=next(iter(params))):
        Strategy(**params)


def test_the_default_strategy_holds() -> None:
    rules = Strategy().rules()
    assert (str(rules.canary), str(rules.batch), str(rules.halt_after)) == ("1", "25%", "0")
