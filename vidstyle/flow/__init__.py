"""Optical flow: estimation backends, warping, consistency masks and flow files.

Shapes: frames (B, 3, H, W) float32 RGB in [0, 1]; flows (B, 2, H, W) float32 in pixels,
channel 0 = x, 1 = y; masks (B, 1, H, W) float32 in {0, 1}. ``forward`` of frame t maps
pixel x of frame t to x + forward(x) in frame t+1.
"""

from vidstyle.flow.consistency import (
    confidence_from_inconsistency,
    consistency_mask,
    disocclusion_mask,
    flow_confidence,
    inconsistency,
    long_term_weights,
    motion_boundary_mask,
    photometric_agreement,
    reliable_region,
)
from vidstyle.flow.cuts import CutScore, shot_cut
from vidstyle.flow.estimate import (
    METHODS,
    DeepFlow,
    DISFlow,
    DualTVL1Flow,
    FlowEstimator,
    RaftFlow,
    flow_from_config,
    make_flow,
    resize_flow,
)
from vidstyle.flow.io import load_flow, read_flo, save_flow, write_flo
from vidstyle.flow.pair import frame_pair
from vidstyle.flow.warp import (
    bicubic_plan,
    transposed_copy,
    valid_mask,
    warp,
    warp_hwc,
    warp_with_plan,
)

__all__ = [
    "bicubic_plan",
    "warp_with_plan",
    "warp_hwc",
    "transposed_copy",
    "CutScore",
    "METHODS",
    "DISFlow",
    "DeepFlow",
    "DualTVL1Flow",
    "FlowEstimator",
    "frame_pair",
    "flow_from_config",
    "RaftFlow",
    "confidence_from_inconsistency",
    "consistency_mask",
    "disocclusion_mask",
    "flow_confidence",
    "inconsistency",
    "load_flow",
    "long_term_weights",
    "make_flow",
    "motion_boundary_mask",
    "photometric_agreement",
    "read_flo",
    "reliable_region",
    "resize_flow",
    "save_flow",
    "shot_cut",
    "valid_mask",
    "warp",
    "write_flo",
]
