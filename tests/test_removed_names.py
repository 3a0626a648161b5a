"""Dead code stays gone: a second style parser beside StyleSpec.parse, and untyped
per-frame state beside FrameContext's typed fields."""

from __future__ import annotations

import dataclasses

from vidstyle import contracts, styles


def test_one_style_parser_and_typed_frame_context() -> None:
    assert not hasattr(styles, "parse_style_mix")  # StyleSpec.parse is the one parser
    names = {f.name for f in dataclasses.fields(contracts.FrameContext)}
    assert "extras" not in names
    assert {"index", "size", "pair", "instances", "alpha"} <= names
