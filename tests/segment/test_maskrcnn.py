"""Mask R-CNN segmenter with a small injected model: never downloads, never builds the
real network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidstyle.errors import WeightsError
from vidstyle.segment.base import Segmenter
from vidstyle.segment.maskrcnn import MaskRCNNSegmenter, hub_file, weights_enum

H, W = 60, 80


class FakeMaskRCNN(torch.nn.Module):
    """Returns fixed torchvision-style detections (masks at ``scale`` of the input)."""

    def __init__(self, labels: list[int], scores: list[float], scale: int = 1) -> None:
        super().__init__()
        self.labels, self.scores, self.scale = labels, scores, scale
        self.seen: list[tuple[int, ...]] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.seen.append(tuple(images[0].shape))
        h, w = images[0].shape[-2] // self.scale, images[0].shape[-1] // self.scale
        n = len(self.labels)
        masks = torch.zeros(n, 1, h, w)
        boxes = torch.zeros(n, 4)
        for k in range(n):  # detection k: a band of columns, k-th fifth of the width
            x0, x1 = k * w // 5, (k + 1) * w // 5
            masks[k, 0, h // 4: 3 * h // 4, x0:x1] = 0.9
            boxes[k] = torch.tensor([x0, h // 4, x1, 3 * h // 4], dtype=torch.float32)
        return [{"boxes": boxes, "labels": torch.tensor(self.labels),
                 "scores": torch.tensor(self.scores), "masks": masks}]


def _frame() -> torch.Tensor:
    return torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))


def test_keeps_confident_people_by_the_label_name() -> None:
    # label 1 is "person" in COCO; here the categories put it at 2 and 1 is a dog
    fake = FakeMaskRCNN(labels=[2, 1, 2, 2], scores=[0.95, 0.99, 0.7, 0.3])
    seg = MaskRCNNSegmenter(model=fake, categories=("__background__", "dog", "person"),
                            score_threshold=0.5)
    assert isinstance(seg, Segmenter)
    seg.check()
    out = seg.segment(_frame())
    assert fake.seen == [(3, H, W)]
    assert out.ids == (0, 0)
    assert torch.allclose(out.scores, torch.tensor([0.95, 0.7]))
    assert out.masks.shape == (2, H, W) and out.size == (H, W)
    # detections 0 and 2 of the fake, in its order
    assert out.boxes[:, 0].tolist() == [0.0, 2 * W // 5]
    assert out.masks[1, H // 2, 2 * W // 5 + 1] == pytest.approx(0.9)
    strict = MaskRCNNSegmenter(model=fake, categories=("__background__", "dog", "person"),
                               score_threshold=0.9)
    assert len(strict.segment(_frame())) == 1


def test_the_default_categories_are_the_weights_own() -> None:
    seg = MaskRCNNSegmenter(model=FakeMaskRCNN(labels=[1, 3], scores=[0.9, 0.9]))
    assert seg.categories == tuple(weights_enum().meta["categories"])
    assert seg.categories[seg.person_label] == "person"
    assert len(seg.segment(_frame())) == 1  # label 3 (a car) dropped


def test_masks_come_back_at_full_resolution() -> None:
    fake = FakeMaskRCNN(labels=[1], scores=[0.9], scale=2)
    out = MaskRCNNSegmenter(model=fake).segment(_frame())
    assert out.masks.shape == (1, H, W)
    assert out.boxes[0].tolist() == [0.0, 14.0, 16.0, 44.0]  # (0, 7, 8, 22) doubled
    assert out.masks[0, H // 2, 8] == pytest.approx(0.9)
    assert out.masks[0, 2, 2] == 0.0


def test_no_people_is_an_empty_result() -> None:
    fake = FakeMaskRCNN(labels=[], scores=[], scale=2)
    out = MaskRCNNSegmenter(model=fake).segment(_frame())
    assert len(out) == 0 and out.masks.shape == (0, H, W) and out.boxes.shape == (0, 4)


def test_missing_weights_name_the_flag_and_the_cache_file(tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    assert hub_file() == expected
    seg = MaskRCNNSegmenter()
    with pytest.raises(WeightsError) as err:
        seg.check()
    assert "--mask-weights" in str(err.value) and str(expected) in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "hub").exists()  # nothing downloaded or created
    with pytest.raises(WeightsError, match=r"--mask-weights .*nope\.pth does not exist"):
        MaskRCNNSegmenter(weights_path=tmp_path / "nope.pth").check()


def test_bad_weight_files_are_refused_before_building(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cached = hub_file()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="does not match the hash in its name"):
        MaskRCNNSegmenter().check()
    garbage = tmp_path / "mine.pth"
    garbage.write_bytes(b"not a checkpoint")
    seg = MaskRCNNSegmenter(weights_path=garbage)
    with pytest.raises(WeightsError, match=r"cannot read Mask R-CNN weights .*mine\.pth"):
        seg.check()
    assert seg.fingerprint().startswith("maskrcnn:maskrcnn_resnet50_fpn_v2:")
