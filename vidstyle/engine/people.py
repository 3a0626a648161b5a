"""The segment stage: people of every frame, tracked through the clip, before stylizing.

Per-person styles need to know which ids exist before the first frame is painted (an
``--instance`` id that never appears is an error listing the ids found), so the engine
runs this stage as a pass of its own over the clip:

1. each frame at the stylizer's working size is segmented
   (:meth:`Segmenter.segment_next`: MediaPipe runs its full detection on key frames and
   follows people in between, from the state the previous frame left); the raw result
   and that state are cached per frame (``raw_NNNNNN.npz``) in a folder keyed by the
   segmenter, the input's SHA-256 and the working size, under
   ``$VIDSTYLE_HOME/cache/segment/``, so a killed run resumes and another style or
   setting reuses them; the next frame always starts from the stored state. With
   ``--segment-every N`` > 1 only every N-th frame (and the first after a cut) is
   segmented; the frames between get the last segmented people moved by the flow
   (:func:`carry_people`), and the interval and the flow key the cache too. The flow of
   the pair (this frame, next frame) is estimated in a second thread meanwhile, at
   :data:`MOTION_SCALE` of the working size;
2. the tracker numbers people (left to right where they first appear) and keeps each
   id through the clip (mask IoU after warping by the flow; short occlusions keep ids);
3. masks get soft edges (``--feather``) and are smoothed in time (blended with the
   previous frame's flow-warped masks where they agree) and the final people of each
   frame are saved (``people_NNNNNN.npz``); stylizers use these masks as they are.

The stylize pass then reads frame i's people (:func:`load_people`). Masks are stored as
uint8 (1/255 steps).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vidstyle import media
from vidstyle.config import RunConfig, SegmentConfig, fingerprint_of
from vidstyle.contracts import FramePair, Instances, ProgressEvent, ProgressFn, limited
from vidstyle.engine.stream import frame_total
from vidstyle.errors import UsageError
from vidstyle.fileio import atomic_path, atomic_write_bytes, sha256_file
from vidstyle.flow import FlowEstimator, flow_from_config, resize_flow
from vidstyle.flow.pair import frame_pair
from vidstyle.imageops import resize, resize_uint8, working_size
from vidstyle.segment.base import Segmenter, SegmentState
from vidstyle.segment.files import FolderMasks, write_id_png
from vidstyle.segment.ops import feather, mask_boxes, warp_masks
from vidstyle.segment.render import overlay
from vidstyle.segment.track import Tracker, smooth_instances
from vidstyle.tensors import to_tensor
from vidstyle.weights.cache import vidstyle_home
from vidstyle.workdir import Stage, WorkDir

log = logging.getLogger(__name__)


def make_segmenter(config: SegmentConfig, *, device: torch.device | str = "cpu",
                   frames: int | None = None, size: tuple[int, int] | None = None
                   ) -> Segmenter:
    """The segmenter of ``config``: the user's mask folder (one PNG for each of ``frames``
    frames of ``size`` (H, W): checked by ``check()``), MediaPipe, Mask R-CNN or the matte
    segmenter."""
    if config.masks_dir is not None:
        # under --max-frames the folder may hold files for later frames too
        return FolderMasks(folder=Path(config.masks_dir), n_frames=frames, size=size,
                           allow_extra=True)
    if config.backend == "maskrcnn":
        from vidstyle.segment.maskrcnn import MaskRCNNSegmenter

        return MaskRCNNSegmenter(weights_path=config.weights_path, device=device)
    if config.backend == "matte":
        from vidstyle.segment.matte import MatteSegmenter

        return MatteSegmenter()
    from vidstyle.segment.mediapipe import MediaPipeSegmenter

    return MediaPipeSegmenter(detect_every=config.detect_every)


def segment_cache_root() -> Path:
    """Where raw per-frame segmentations are cached (safe to delete)."""
    return vidstyle_home() / "cache" / "segment"


#: The segment pass estimates the motion between frames (for tracking, mask smoothing and
#: carrying people) on frames scaled by this factor: soft masks with edges feathered over
#: several pixels need less precise flow than the stylized frames, and at half size the
#: flow and its consistency cost about a quarter (benchmarks/RESULTS.md, issue 17). Its
#: consumers resize the flow to the masks' size.
MOTION_SCALE = 0.5


def motion_frame(x: torch.Tensor) -> torch.Tensor:
    """A working-size frame (1, 3, H, W) at :data:`MOTION_SCALE` for the segment pass's
    flow (antialiased)."""
    h, w = x.shape[-2:]
    return resize(x, (max(8, round(h * MOTION_SCALE)), max(8, round(w * MOTION_SCALE))))


#: Layout of the cached ``.npz`` files (part of the raw cache's fingerprint).
PEOPLE_FORMAT = 2
#: Version of what the segment pass does with the same inputs (tracking, carrying,
#: smoothing): part of the segment stage's fingerprint, so a changed pass never reuses a
#: stage an older one wrote. 2: face boxes carried by the forward flow.
PASS_VERSION = 2


def save_people(path: Path, inst: Instances, state: SegmentState | None = None) -> None:
    """Write ``inst`` and the segmenter's ``state`` after this frame (if any) atomically
    to an ``.npz`` file. Masks are stored as uint8, each cropped to the box of its
    nonzero pixels (``crops``: (N, 4) y0, x0, y1, x1; the pixels of all crops
    concatenated in ``pixels``): people cover a small part of a frame, so writing and
    reading cost little."""
    masks = (inst.masks.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    crops = np.zeros((len(masks), 4), np.int64)
    parts = []
    for k, m in enumerate(masks):
        rows, cols = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
        if len(rows):
            crops[k] = rows[0], cols[0], rows[-1] + 1, cols[-1] + 1
            parts.append(m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].ravel())
    pixels = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    faces = inst.faces.numpy() if inst.faces is not None else np.zeros((0, 4), np.float32)
    extra = {} if state is None else {"state_key": np.asarray(state.key, np.int64),
                                      "state_rois": state.rois, "state_scores": state.scores}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, size=np.asarray(inst.size, np.int64), crops=crops,
                            pixels=pixels, boxes=inst.boxes.numpy().astype(np.float32),
                            scores=inst.scores.numpy().astype(np.float32),
                            ids=np.asarray(inst.ids, np.int64), faces=faces,
                            has_faces=np.asarray(inst.faces is not None), **extra)


def load_people(path: Path) -> Instances:
    """Read the people :func:`save_people` wrote."""
    return load_raw(path)[0]


def load_raw(path: Path) -> tuple[Instances, SegmentState | None]:
    """Read what :func:`save_people` wrote: the people and the segmenter's state."""
    with np.load(path) as z:
        faces = torch.from_numpy(z["faces"]) if bool(z["has_faces"]) else None
        state = None
        if "state_key" in z.files:
            state = SegmentState(key=int(z["state_key"]), rois=z["state_rois"],
                                 scores=z["state_scores"])
        crops, pixels = z["crops"], z["pixels"]
        masks = np.zeros((len(crops), *(int(v) for v in z["size"])), np.uint8)
        at = 0
        for k, (y0, x0, y1, x1) in enumerate(crops):
            n = int((y1 - y0) * (x1 - x0))
            masks[k, y0:y1, x0:x1] = pixels[at:at + n].reshape(y1 - y0, x1 - x0)
            at += n
        return Instances(masks=torch.from_numpy(masks).float() / 255.0,
                         boxes=torch.from_numpy(z["boxes"]), scores=torch.from_numpy(z["scores"]),
                         ids=tuple(int(i) for i in z["ids"]), faces=faces), state


@dataclass
class PeopleTrack:
    """The segment stage's result: the folder of per-frame people, the frame count and
    every id seen, with the frames it appears in."""

    stage: Stage
    frames: int
    seen: dict[int, list[int]]

    def path(self, i: int) -> Path:
        return self.stage.path(f"people_{i:06d}.npz")

    def load(self, i: int) -> Instances:
        return load_people(self.path(i))

    def check_ids(self, wanted: set[int], source: str) -> None:
        """Every id of ``wanted`` (``--instance``) appears somewhere: else a UsageError
        listing the ids found."""
        if not self.seen:
            raise UsageError(f"no people found in {source}: per-person styles need people "
                             "(check with `vidstyle masks`)")
        missing = sorted(wanted - set(self.seen))
        if missing:
            found = ", ".join(str(i) for i in sorted(self.seen))
            raise UsageError(f"--instance {', '.join(map(str, missing))}: no such person in "
                             f"{source} (people found: {found}; see `vidstyle masks`)")


def track_people(
    frames: Callable[[], Iterator[Any]],
    *,
    prepare: Callable[[np.ndarray], torch.Tensor],
    segmenter: Segmenter,
    flow: FlowEstimator | None,
    config: SegmentConfig,
    fps: float | None,
    input_sha256: str,
    stage: Stage,
    max_frames: int | None,
    total: int | None,
    progress: ProgressFn,
) -> PeopleTrack:
    """Run the segment stage (see the module docstring) into ``stage``; raw results are
    cached under :func:`segment_cache_root`."""
    done = stage.path("seen.json")
    if done.is_file():
        meta = json.loads(done.read_text())
        return PeopleTrack(stage, int(meta["frames"]),
                           {int(k): v for k, v in meta["seen"].items()})
    gap = max(1, round(config.max_gap * (fps or 25.0)))
    tracker = Tracker(max_gap_frames=gap)
    raw_root: Stage | None = None
    state: SegmentState | None = None
    prev: Instances | None = None
    seen: dict[int, list[int]] = {}
    n = 0

    def pair_of(a: torch.Tensor, b: torch.Tensor) -> FramePair:
        with torch.inference_mode():
            return frame_pair(a, b, flow=flow, agreement=False)

    # One frame of read-ahead: the pair (this frame, next frame) is estimated in a second
    # thread while this frame is segmented, tracked and saved.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidstyle-segment-flow")
    source = iter(limited(frames(), max_frames))

    def read() -> tuple[Any, torch.Tensor, torch.Tensor | None] | None:
        # the frame, at working size and (with a flow) at the motion scale
        frame = next(source, None)
        if frame is None:
            return None
        x = prepare(frame.rgb)
        return frame, x, motion_frame(x) if flow is not None else None

    def submit(a: torch.Tensor | None, b: torch.Tensor | None) -> Future[FramePair] | None:
        if flow is None or a is None or b is None or a.shape != b.shape:
            return None
        return pool.submit(pair_of, a, b)

    carried: Instances | None = None  # the people carried to frames between key frames
    # segment every `every`-th frame; never carry a user's mask files, nor without flow
    every = config.segment_every if flow is not None and config.masks_dir is None else 1
    try:
        ahead = read()
        pending = None
        while ahead is not None:
            frame, x, small = ahead
            ahead = read()
            upcoming = submit(small, ahead[2]) if ahead is not None else None
            pair = pending.result() if pending is not None else None
            pending = upcoming
            if raw_root is None:
                # a segmenter that follows people segments frame i from the state of the
                # last frame it segmented: with carried frames between, that depends on
                # the interval and (through the cuts) on the flow, so they key the cache
                carrying = () if every == 1 else ("every", every, flow.fingerprint(),
                                                  MOTION_SCALE)
                fp = fingerprint_of("segment-raw", segmenter.fingerprint(), input_sha256,
                                    list(x.shape[-2:]), PEOPLE_FORMAT, *carrying)
                raw_root = Stage(root=segment_cache_root(), name=fp, fingerprint=fp).open()
            if (carried is not None and pair is not None and not pair.cut
                    and n % every != 0):
                # between key frames: the last segmented people moved by the flow
                raw = carried = carry_people(carried, pair.backward, pair.forward)
            else:
                raw_path = raw_root.path(f"raw_{frame.index:06d}.npz")
                if not raw_path.is_file():
                    save_people(raw_path, *segmenter.segment_next(x, index=frame.index,
                                                                  state=state))
                # always the stored (uint8-rounded) masks and state: a fresh and a cached
                # run must track the same numbers, or ids depend on what the cache held
                raw, state = load_raw(raw_path)
                carried = raw if every > 1 else None
            # people of a user's mask files come numbered: their ids are kept, not tracked
            numbered = len(raw) > 0 and all(i != 0 for i in raw.ids)
            people = raw if numbered else tracker.update(raw, pair)
            # soft edges first, then the temporal blend: it acts on the edge ramps, where
            # consecutive frames differ by little (binary masks differ by 0 or 1: no blend)
            people = _feathered(people, config.feather)
            if config.smooth:
                people = smooth_instances(people, prev, pair)
            save_people(stage.path(f"people_{frame.index:06d}.npz"), people)
            for k, pid in enumerate(people.ids):
                if pid not in seen:
                    _warn_if_small(pid, people.boxes[k], frame.index, config.feather,
                                   tuple(x.shape[-2:]))
                seen.setdefault(pid, []).append(frame.index)
            prev, n = people, n + 1
            progress(ProgressEvent("segment", n, total))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    atomic_write_bytes(done, json.dumps({"frames": n, "seen": seen}).encode())
    return PeopleTrack(stage, n, seen)


def carry_people(people: Instances, backward: torch.Tensor, forward: torch.Tensor) -> Instances:
    """``people`` of the previous frame moved onto this frame by the pair's flows
    (``backward``: (1, 2, H, W) this frame -> previous; ``forward``: previous -> this, on
    the previous frame's grid; pixels, any size): masks warped by ``backward``
    (:func:`~vidstyle.segment.ops.warp_masks`), boxes those of the warped masks, face boxes
    moved by the mean of ``forward`` inside them (a person's box clipped at the frame's
    edge does not hold them back); a person whose mask leaves the frame is dropped.
    Scores and ids are kept."""
    if len(people) == 0:
        return people
    masks = warp_masks(people.masks, backward)
    boxes = mask_boxes(masks)
    keep = [k for k in range(len(people)) if float(boxes[k, 2] - boxes[k, 0]) > 0]
    faces = None
    if people.faces is not None:
        faces = _carried_faces(people.faces, forward, tuple(people.masks.shape[-2:]))[keep]
    return dataclasses.replace(people, masks=masks[keep], boxes=boxes[keep],
                               scores=people.scores[keep],
                               ids=tuple(people.ids[k] for k in keep), faces=faces)


def _carried_faces(faces: torch.Tensor, forward: torch.Tensor,
                   size: tuple[int, int]) -> torch.Tensor:
    """Face boxes (N, 4) of the previous frame moved by the mean of ``forward`` (previous
    -> this frame, on the previous frame's grid, resized to ``size``) over each box
    clipped to the frame. Rows of NaN (no face) stay NaN."""
    flow = resize_flow(forward.to(torch.float32), size)[0]
    h, w = size
    out = faces.clone()
    for k, box in enumerate(faces.tolist()):
        if any(math.isnan(v) for v in box):
            continue
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
        if x1 <= x0 or y1 <= y0:
            continue
        dx, dy = flow[:, y0:y1, x0:x1].mean(dim=(1, 2)).tolist()
        out[k] = faces[k] + torch.tensor([dx, dy, dx, dy], dtype=faces.dtype)
    return out


def _feathered(people: Instances, fraction: float) -> Instances:
    """``people`` with soft mask edges ``fraction`` x the frame diagonal wide."""
    if not len(people) or fraction <= 0:
        return people
    h, w = people.size
    masks = feather(people.masks.float(), fraction * (h * h + w * w) ** 0.5)
    return dataclasses.replace(people, masks=masks)


#: A person shorter than this (pixels at the working size) gets a style only in name:
#: the soft mask edge and the network's receptive field blur a smaller figure away.
MIN_PERSON_PX = 24


def _warn_if_small(pid: int, box: torch.Tensor, frame: int, feather: float,
                   size: tuple[int, int]) -> None:
    """Report once (the frame a person first appears) a person too small for a style of
    their own, with their size; they are kept, not dropped."""
    x0, y0, x1, y1 = (float(v) for v in box)
    edge = feather * (size[0] ** 2 + size[1] ** 2) ** 0.5
    if y1 - y0 < max(MIN_PERSON_PX, 4 * edge):
        log.warning("person %d (first in frame %d) is only %dx%d px at the working size: "
                    "too small for a clear style of their own (try a larger --size)",
                    pid, frame, round(x1 - x0), round(y1 - y0))


def segment_fingerprint(config: RunConfig, segmenter: Segmenter, flow: FlowEstimator | None,
                        input_sha256: str) -> str:
    """What determines the tracked people of a run (the segment stage's folder)."""
    seg = config.segment
    return fingerprint_of("segment", segmenter.fingerprint(), input_sha256, seg,
                          flow.fingerprint() if flow is not None else None,
                          MOTION_SCALE if flow is not None else None,
                          config.max_frames, config.fast.size, PEOPLE_FORMAT, PASS_VERSION)


__all__ = ["PeopleTrack", "carry_people", "load_people", "load_raw", "make_segmenter",
           "save_people", "segment_cache_root", "segment_fingerprint", "track_people"]


def export_masks(
    input_path: str | Path,
    out_dir: str | Path,
    config: RunConfig,
    *,
    progress: ProgressFn,
    overwrite: bool = False,
) -> PeopleTrack:
    """``vidstyle masks``: the people of every frame of ``input_path`` as the fast method's
    per-person run sees them (same working size, segmenter, tracking and ids), written
    into ``out_dir``: ``<name>.png`` (pixel = person id, 0 = background) and
    ``<name>_overlay.png`` (a coloured preview with each id drawn on its person), where
    ``<name>`` is ``frame_NNNNNN`` for a video and the input's stem for a still image.
    Refuses to replace existing files unless ``overwrite``."""
    input_path, out_dir = Path(input_path), Path(out_dir)
    info = media.probe(input_path)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir} is a file: give a folder")
    still = info.frame_count == 1 and media.is_image_path(input_path)

    def name(i: int) -> str:
        return input_path.stem if still else f"frame_{i:06d}"

    size = config.fast.size

    def prepare(rgb: np.ndarray) -> torch.Tensor:
        return to_tensor(resize_uint8(rgb, working_size(rgb.shape[0], rgb.shape[1], size)))

    if not overwrite and out_dir.is_dir():
        clash = [p for p in (out_dir / f"{name(0)}.png", out_dir / f"{name(0)}_overlay.png")
                 if p.exists()]
        if clash:
            raise UsageError(f"{clash[0]} exists: pass --overwrite to replace it")
    wanted = info.frame_count if config.max_frames is None else min(info.frame_count or 1,
                                                                       config.max_frames)
    segmenter = make_segmenter(config.segment, frames=wanted, size=(info.height, info.width))
    segmenter.check()
    flow = flow_from_config(config.flow)
    sha = sha256_file(input_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = WorkDir(out_dir / ".vidstyle-work")
    stage = work.stage("segment", segment_fingerprint(config, segmenter, flow, sha))
    people = track_people(lambda: media.iter_frames(input_path), prepare=prepare,
                          segmenter=segmenter, flow=flow, config=config.segment,
                          fps=float(info.fps) if info.fps else None, input_sha256=sha,
                          stage=stage, max_frames=config.max_frames,
                          total=frame_total(info, config.max_frames),
                          progress=progress)
    for frame in limited(media.iter_frames(input_path), config.max_frames):
        inst = people.load(frame.index)
        rgb = resize_uint8(frame.rgb, inst.size)
        write_id_png(out_dir / f"{name(frame.index)}.png", inst, inst.size)
        preview = overlay(rgb, inst)
        with atomic_path(out_dir / f"{name(frame.index)}_overlay.png") as tmp:
            Image.fromarray(preview).save(tmp, format="PNG")
        progress(ProgressEvent("write", frame.index + 1, people.frames))
    work.remove_stages()
    return people
