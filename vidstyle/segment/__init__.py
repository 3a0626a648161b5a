"""Instance masks of people: detection and segmentation backends behind one call, and
pure functions for feathering, tracking and temporal smoothing (shaped like
:mod:`vidstyle.flow`).

Shapes: frames (1, 3, H, W) float32 RGB in [0, 1]; masks (N, H, W) float32 in [0, 1] at
the frame's resolution; boxes (N, 4) pixels (x0, y0, x1, y1). Results are
:class:`vidstyle.contracts.Instances`.
"""

from vidstyle.segment.base import Segmenter

__all__ = ["Segmenter"]
