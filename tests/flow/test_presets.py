"""Flow presets have one source of defaults: config.DEFAULT_FLOW_PRESET (the backend
constructors used to repeat them: DISFlow "medium", RaftFlow "large")."""

from __future__ import annotations

import inspect

import pytest

from vidstyle import config
from vidstyle.flow import DISFlow, RaftFlow, flow_from_config, make_flow


@pytest.mark.parametrize("cls", [DISFlow, RaftFlow])
def test_constructors_take_the_preset_keyword_only_without_a_default(cls: type) -> None:
    p = inspect.signature(cls).parameters["preset"]
    assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        cls()


def test_defaults_come_from_the_table(monkeypatch) -> None:
    for method in ("dis", "raft"):
        assert make_flow(method).preset == config.DEFAULT_FLOW_PRESET[method]  # type: ignore[attr-defined]
        est = flow_from_config(config.FlowConfig(method=method))
        assert est.preset == config.DEFAULT_FLOW_PRESET[method]  # type: ignore[attr-defined]
    monkeypatch.setitem(config.DEFAULT_FLOW_PRESET, "dis", "ultrafast")
    assert make_flow("dis").preset == "ultrafast"  # type: ignore[attr-defined]
