"""Clip stylizers under the engine: the decode stage kept on disk and the flow stage as a
pair-flow cache, so a stylizer may visit frames in any order and several passes.

Work directory stages (every artifact written atomically, resumable):

- ``decode/``: the frames at working size as PNG plus ``index.json`` (frame count,
  working size and a SHA-256 per frame) once complete.
- ``flow/``: :class:`vidstyle.flow.cache.PairFlowCache` files, named by frame content
  hashes; its fingerprint holds only the flow backend and the frame size, so flows are
  reused across runs and styles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidstyle.config import fingerprint_of
from vidstyle.contracts import ClipStylizer, Instances, ProgressEvent, ProgressFn, frame_unit
from vidstyle.errors import InputError
from vidstyle.fileio import atomic_write_bytes
from vidstyle.flow.cache import PairFlowCache
from vidstyle.flow.estimate import FlowEstimator
from vidstyle.tensors import to_tensor, to_uint8
from vidstyle.workdir import Stage, WorkDir, load_png, save_png


def frame_hash(rgb: np.ndarray) -> str:
    """SHA-256 (hex) of an (H, W, 3) uint8 frame's shape and pixels."""
    h = hashlib.sha256(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


@dataclass
class DecodedClip:
    """What the decode stage produced: frame count, working size (h, w), a content hash
    per frame, and the stage holding ``frame_NNNNNN.png``."""

    n: int
    size: tuple[int, int]
    hashes: list[str]
    stage: Stage

    def frame_path(self, i: int) -> Path:
        return self.stage.path(frame_unit(i))

    def frame(self, i: int) -> torch.Tensor:
        """Frame ``i`` as (1, 3, H, W) float32 in [0, 1]."""
        return to_tensor(load_png(self.frame_path(i)))


def decode_clip(
    frames: Callable[[], Iterator[Any]],
    *,
    prepare: Callable[[np.ndarray], torch.Tensor],
    stage: Stage,
    n_frames: int | None,
    progress: ProgressFn,
) -> DecodedClip:
    """Working-size frames as PNGs in ``stage`` (streamed; reused once complete).

    ``frames()`` yields media frames numbered from 0; ``prepare`` maps (H, W, 3) uint8 to
    the working-size tensor (the stylizer's). Raises InputError for frames out of order or
    a clip that changes size mid-stream.
    """
    index = stage.path("index.json")
    if index.is_file():
        meta = json.loads(index.read_text())
        return DecodedClip(int(meta["n"]), tuple(meta["size"]), list(meta["hashes"]), stage)
    hashes: list[str] = []
    size: tuple[int, int] | None = None
    src_shape: tuple[int, ...] = ()
    for frame in frames():
        if frame.index != len(hashes):
            raise InputError(f"frames out of order: got {frame.index}, want {len(hashes)}")
        if size is None:
            src_shape = frame.rgb.shape[:2]
        elif frame.rgb.shape[:2] != src_shape:
            raise InputError(
                f"frame {frame.index} is {frame.rgb.shape[1]}x{frame.rgb.shape[0]}, "
                "but the clip changes size mid-stream"
            )
        x = prepare(frame.rgb)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        rgb = frame.rgb if tuple(frame.rgb.shape[:2]) == size else to_uint8(x)
        save_png(stage.path(frame_unit(frame.index)), rgb)
        hashes.append(frame_hash(rgb))
        progress(ProgressEvent("decode", len(hashes), n_frames))
    meta = {"n": len(hashes), "size": list(size or (0, 0)), "hashes": hashes}
    atomic_write_bytes(index, json.dumps(meta).encode())
    return DecodedClip(len(hashes), size or (0, 0), hashes, stage)


def run_clip(
    stylizer: ClipStylizer,
    *,
    frames: Callable[[], Iterator[Any]],
    stage: Stage,
    work: WorkDir,
    n_frames: int | None,
    progress: ProgressFn,
    flow: FlowEstimator | None,
    people: Callable[[int], Instances] | None = None,
) -> tuple[int, int]:
    """Decode ``frames()`` into ``work`` (stage ``decode``), offer pair flows (stage
    ``flow``, when the stylizer needs them) and each frame's people (``people(i)``, the
    segment stage's result, when it asks for them) and let ``stylizer`` write the clip
    into ``stage``. Returns (frames computed, frames reused) of the final output."""
    dec = work.stage("decode", fingerprint_of("decode", stage.fingerprint))
    clip = decode_clip(frames, prepare=stylizer.prepare, stage=dec, n_frames=n_frames,
                       progress=progress)
    flows = None
    if stylizer.needs.flow and clip.n > 1:
        if flow is None:
            raise ValueError("this stylizer needs optical flow: pass a flow estimator")
        fp = fingerprint_of("flow", flow.fingerprint(), list(clip.size))
        flows = PairFlowCache(estimator=flow, stage=work.stage("flow", fp),
                              frame_path=clip.frame_path, hashes=clip.hashes)
    try:
        return stylizer.stylize_clip(clip=clip, flows=flows, out=stage, work=work,
                                     progress=progress, people=people)
    finally:
        if flows is not None:
            flows.close()


__all__ = ["DecodedClip", "decode_clip", "frame_hash", "run_clip"]
