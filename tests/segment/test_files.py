"""Instance-id PNGs: the user's mask folders (order, checks, reading) and writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidstyle.contracts import Instances
from vidstyle.errors import UsageError
from vidstyle.segment.base import Segmenter
from vidstyle.segment.files import (
    FolderMasks,
    check_mask_folder,
    instances_from_ids,
    mask_files,
    read_id_png,
    write_id_png,
)
from vidstyle.segment.ops import mask_boxes

H, W = 24, 32


def _ids(value_boxes: list[tuple[int, int, int, int, int]], dtype=np.uint8) -> np.ndarray:
    a = np.zeros((H, W), dtype)
    for v, y0, y1, x0, x1 in value_boxes:
        a[y0:y1, x0:x1] = v
    return a


def _folder(tmp_path: Path, n: int, name: str = "frame_{:06d}.png") -> Path:
    d = tmp_path / "masks"
    d.mkdir()
    for i in range(n):
        Image.fromarray(_ids([(7, 2, 10, 2 + i, 12 + i), (3, 12, 20, 15, 25)])).save(
            d / name.format(i))
    return d


def test_files_are_taken_in_natural_order(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    for name in ["f10.png", "f2.png", "F1.PNG", "f2.txt", ".f0.png", "f002b.png"]:
        (d / name).write_bytes(b"")
    assert [p.name for p in mask_files(d)] == ["F1.PNG", "f2.png", "f002b.png", "f10.png"]
    with pytest.raises(UsageError, match="is not a folder"):
        mask_files(d / "f2.png")


def test_id_png_round_trip_8_and_16_bit(tmp_path: Path) -> None:
    masks = torch.zeros(2, H, W)
    masks[0, 2:10, 2:12] = 0.9
    masks[1, 5:20, 8:25] = 0.7  # overlaps person 0's box: the stronger mask wins
    masks[1, 21:23, 0:3] = 0.4  # below 0.5: background
    inst = Instances(masks=masks, boxes=mask_boxes(masks), scores=torch.ones(2), ids=(4, 300))
    path = write_id_png(tmp_path / "out" / "frame_000000.png", inst)
    assert sorted(p.name for p in path.parent.iterdir()) == ["frame_000000.png"]  # no temp
    ids = read_id_png(path)
    assert ids.shape == (H, W)
    assert Image.open(path).mode.startswith("I")  # 300 needs 16 bit
    assert ids[3, 3] == 4 and ids[6, 9] == 4 and ids[15, 20] == 300
    assert ids[22, 1] == 0 and ids[0, 31] == 0
    small = Instances(masks=masks, boxes=mask_boxes(masks), scores=torch.ones(2), ids=(4, 5))
    p8 = write_id_png(tmp_path / "small.png", small, size=(H * 2, W * 2))
    with Image.open(p8) as im:
        assert im.mode == "L" and im.size == (W * 2, H * 2)
    assert set(np.unique(read_id_png(p8)).tolist()) == {0, 4, 5}
    with pytest.raises(ValueError, match="ids must be"):
        write_id_png(tmp_path / "x.png", Instances(masks, mask_boxes(masks), torch.ones(2), (0, 1)))


def test_instances_keep_the_users_ids_and_resize_softly() -> None:
    ids = _ids([(9, 0, 12, 0, 16), (2, 12, 24, 16, 32)])
    inst = instances_from_ids(ids)
    assert inst.ids == (2, 9)
    assert inst.size == (H, W)
    assert torch.equal(inst.masks[1], torch.from_numpy((ids == 9).astype(np.float32)))
    assert inst.boxes.tolist() == [[16.0, 12.0, 32.0, 24.0], [0.0, 0.0, 16.0, 12.0]]
    half = instances_from_ids(ids, (H // 2, W // 2))
    assert half.size == (H // 2, W // 2) and half.ids == (2, 9)
    assert instances_from_ids(np.zeros((H, W), np.uint8), (5, 6)).masks.shape == (0, 5, 6)


def test_folder_masks_reads_frames_by_index_and_in_order(tmp_path: Path) -> None:
    d = _folder(tmp_path, 3)
    seg = FolderMasks(folder=d, n_frames=3, size=(H, W))
    assert isinstance(seg, Segmenter)
    seg.check()
    second = seg.segment_index(1)
    assert second.ids == (3, 7)
    assert second.boxes[1].tolist() == [3.0, 2.0, 13.0, 10.0]
    frame = torch.zeros(1, 3, H * 2, W * 2)
    first, again = seg.segment(frame, index=0), seg.segment(frame, index=1)
    assert first.size == (H * 2, W * 2)
    assert first.boxes[1].tolist() == [4.0, 4.0, 24.0, 20.0]
    assert again.boxes[1].tolist() == [6.0, 4.0, 26.0, 20.0]  # frame 1's file
    fp = seg.fingerprint()
    Image.fromarray(_ids([(1, 0, 5, 0, 5)])).save(d / "frame_000002.png")
    assert FolderMasks(folder=d, n_frames=3).fingerprint() != fp


def test_wrong_count_is_one_error_naming_the_folder_and_counts(tmp_path: Path) -> None:
    d = _folder(tmp_path, 3)
    with pytest.raises(UsageError, match=r"has 3 PNG files, expected 5 .*frames 3\.\.4"):
        check_mask_folder(d, 5, (H, W))
    with pytest.raises(UsageError, match="has 3 PNG files, expected 2"):
        check_mask_folder(d, 2, (H, W))
    assert len(check_mask_folder(d, 2, (H, W), allow_extra=True)) == 2
    with pytest.raises(UsageError, match="expected 4"):
        FolderMasks(folder=d, n_frames=4).check()


def test_a_wrong_size_names_the_file_and_the_expected_size(tmp_path: Path) -> None:
    d = _folder(tmp_path, 3)
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(d / "frame_000001.png")
    with pytest.raises(UsageError, match=r"frame_000001\.png: is 33x24, expected 32x24"):
        check_mask_folder(d, 3, (H, W))


@pytest.mark.parametrize("kind", ["garbage", "rgb", "truncated"])
def test_a_bad_file_is_named(tmp_path: Path, kind: str) -> None:
    d = _folder(tmp_path, 3)
    bad = d / "frame_000002.png"
    if kind == "garbage":
        bad.write_bytes(b"not a png at all")
        match = "cannot read it as an image"
    elif kind == "rgb":
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(bad)
        match = "mode RGB is not greyscale"
    else:
        noisy = np.random.default_rng(0).integers(0, 255, (H, W), dtype=np.uint8)
        Image.fromarray(noisy).save(bad)
        bad.write_bytes(bad.read_bytes()[:-40])
        match = "is truncated or corrupt"
    with pytest.raises(UsageError, match=rf"frame_000002\.png: {match}"):
        check_mask_folder(d, 3, (H, W))


def test_sixteen_bit_and_palette_files_are_ids(tmp_path: Path) -> None:
    p16 = tmp_path / "a.png"
    Image.fromarray(_ids([(1000, 0, 4, 0, 4)], np.uint16)).save(p16)
    assert read_id_png(p16)[1, 1] == 1000
    pal = Image.fromarray(_ids([(5, 0, 4, 0, 4)])).convert("P")
    pal.putpalette([0, 0, 0] * 256)
    pal.save(tmp_path / "p.png")
    assert read_id_png(tmp_path / "p.png")[1, 1] == 5
