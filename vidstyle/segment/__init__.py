"""Instance masks of people: detection and segmentation backends behind one call, and
pure functions for feathering, tracking and temporal smoothing (shaped like
:mod:`vidstyle.flow`).

Shapes: frames (1, 3, H, W) float32 RGB in [0, 1]; masks (N, H, W) float32 in [0, 1] at
the frame's resolution; boxes (N, 4) pixels (x0, y0, x1, y1). Results are
:class:`vidstyle.contracts.Instances`. Backends: :mod:`vidstyle.segment.mediapipe` (the
offline default), :mod:`vidstyle.segment.maskrcnn` (torchvision), :class:`FolderMasks`
(a user's mask files); they are imported where used (they load their runtimes).
"""

from vidstyle.segment.base import FrameByFrame, Segmenter, SegmentState
from vidstyle.segment.faces import face_mask
from vidstyle.segment.files import FolderMasks, check_mask_folder, read_id_png, write_id_png
from vidstyle.segment.ops import (
    composite,
    edge_band,
    feather,
    hard_ids,
    iou_matrix,
    smooth_masks,
    warp_masks,
)
from vidstyle.segment.render import overlay, write_overlay
from vidstyle.segment.track import (
    Tracker,
    count_id_switches,
    gap_frames,
    match_to_ground_truth,
    smooth_instances,
)

__all__ = [
    "FolderMasks",
    "FrameByFrame",
    "SegmentState",
    "Segmenter",
    "Tracker",
    "check_mask_folder",
    "composite",
    "count_id_switches",
    "edge_band",
    "face_mask",
    "feather",
    "gap_frames",
    "hard_ids",
    "iou_matrix",
    "match_to_ground_truth",
    "overlay",
    "read_id_png",
    "smooth_instances",
    "smooth_masks",
    "warp_masks",
    "write_id_png",
    "write_overlay",
]
