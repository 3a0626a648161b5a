"""The engine: runs the stages a pipeline lists, for every method.

``run(input, output, config)`` checks everything first (input, output, settings, work
folder, weights), builds the stylizer of ``config.method`` and drives it:

- a frame stylizer (:class:`~vidstyle.contracts.FrameStylizer`: the fast network,
  per-frame optimization) through :func:`vidstyle.engine.stream.stream_frames`: decode,
  flow and masks in one thread, the stylizer in this one, encode in a third; costly
  outputs are cached per frame in the work directory;
- a clip stylizer (:class:`~vidstyle.contracts.ClipStylizer`: temporal optimization)
  through :func:`vidstyle.engine.clip.run_clip`: the clip decoded to the work directory,
  pair flows cached there, the stylizer's frames encoded at the end.

The flow stage is the same for both (:func:`vidstyle.flow.flow_from_config`), and there is
one encode path (:class:`vidstyle.media.MediaWriter`). Outputs appear only when complete,
never replace an existing file unless asked (``overwrite``), and take the umask's mode; a
finished run's work folder is removed unless ``keep_work``.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidstyle import __version__, media
from vidstyle.config import RunConfig, fingerprint_of
from vidstyle.contracts import (
    ProgressEvent,
    ProgressFn,
    StyleSpec,
    Stylizer,
    StylizerNeeds,
    frame_unit,
    limited,
    no_progress,
)
from vidstyle.device import pick_device
from vidstyle.engine.clip import run_clip
from vidstyle.engine.people import (
    PeopleTrack,
    make_segmenter,
    segment_fingerprint,
    track_people,
)
from vidstyle.engine.spec import PipelineSpec, build_config, resolve_method
from vidstyle.engine.stream import frame_total, stream_frames
from vidstyle.errors import InputError, Interrupted, UsageError
from vidstyle.fast.stylizer import FastStylizer, make_fast_stylizer
from vidstyle.fileio import sha256_file
from vidstyle.flow import FlowEstimator, flow_from_config
from vidstyle.imageops import load_image, resize_uint8
from vidstyle.optim.frame import OptimFrameStylizer, load_loss_net
from vidstyle.optim.video import TemporalOptimStylizer
from vidstyle.segment.base import Segmenter
from vidstyle.styles import resolve_style
from vidstyle.workdir import WorkDir, default_work_dir, load_png

log = logging.getLogger(__name__)

StylizerFactory = Callable[..., Stylizer]


@dataclass
class RunResult:
    """output: the file written; work_dir: the work folder kept (None: none was needed,
    or it was removed when done); frames written, computed and reused from a work folder;
    cuts: frames that start a new shot (fast method)."""

    output: Path
    work_dir: Path | None
    frames: int
    computed: int
    reused: int
    cuts: tuple[int, ...] = ()


def stylizer_class(config: RunConfig) -> type[Any]:
    """The class of the stylizer :func:`make_stylizer` builds for ``config`` (resolved
    method): its ``kind`` and ``needs_for(config)`` are known before anything loads."""
    if config.method == "fast":
        return FastStylizer
    if config.method != "optim":
        raise UsageError(f"method {config.method!r} is not resolved: use optim or fast")
    return TemporalOptimStylizer if config.temporal.mode != "none" else OptimFrameStylizer


def make_stylizer(*, config: RunConfig, device: Any) -> Stylizer:
    """The stylizer of ``config.method`` (loads weights and the style image: call once per
    run). Raises StyleError for an unknown style (StyleImageError for a style image that
    cannot be read), WeightsError for missing weights."""
    if config.method == "fast":
        return make_fast_stylizer(config=config, device=device)
    if config.method != "optim":
        raise UsageError(f"method {config.method!r} is not resolved: use optim or fast")
    spec = config.style
    if spec.layer_weights or spec.instance_layers:
        raise UsageError("per-layer style weights need the fast method (--method fast)")
    if any(not mix.is_single for mix in spec.mixes()):
        raise UsageError(f"style mixes ({spec}) need the fast method; the optimization "
                         "method takes one style name or image (per person too)")
    style = resolve_style(spec.default.refs[0])
    style_image = load_image(style.path)  # a broken style image fails now, before any work
    kw: dict[str, Any] = {}
    if spec.per_person:  # every person's style image, loaded now too
        kw["people_styles"] = {
            ref: (str(info.path), load_image(info.path))
            for ref in spec.refs() for info in [resolve_style(ref)]}
    net, style_layers, content_layers = load_loss_net(config, device)
    kw.update(config=config, device=device, net=net, style_image=style_image,
              style_path=str(style.path), style_layers=style_layers,
              content_layers=content_layers)
    return stylizer_class(config)(**kw)


def resolved(config: RunConfig) -> RunConfig:
    """``config`` with method "auto" resolved (see :func:`resolve_method`)."""
    if config.method != "auto":
        return config
    return dataclasses.replace(config, method=resolve_method(config.style))


def default_output(input_path: str | Path, config: RunConfig, *,
                   pipeline: PipelineSpec | None = None) -> Path:
    """The default output beside the input: ``<stem>_<style>_<method>[_<changes>]<suffix>``.

    The name encodes what changes the result (the style spec, the method and every
    stylization setting that differs from its default), sanitized for file systems (no
    ``:``, ``,`` or spaces); so two runs with different settings never share a name.
    The suffix is the input's when vidstyle writes it, else ``.png`` for a still image
    and ``.mp4`` for a video. Flow settings count only when ``pipeline`` (default: the
    built-in one) has a flow stage.
    """
    config = resolved(config)
    p = Path(input_path)
    flow = pipeline.has("flow") if pipeline is not None else True
    parts = [p.stem, config.style.slug(), config.method] + _changes(config, flow=flow)
    if len(parts) > 7:  # many changes: the first few, then a hash of all
        parts = parts[:6] + [fingerprint_of(config.stylize_fingerprint())[:8]]
    name = "_".join(parts)
    if media.is_image_path(p) or media.is_video_path(p):
        suffix = p.suffix
    else:  # a suffix vidstyle reads but does not write: a still stays a still
        suffix = ".png" if _is_still(p) else ".mp4"
    return p.with_name(name + suffix)


def _is_still(path: Path) -> bool:
    """Whether ``path`` is a still image (FFmpeg opens it with an image demuxer, e.g.
    ``.ppm``); False when it cannot be probed (the run reports why)."""
    try:
        return media.probe(path).kind == "image"
    except InputError:
        return False


def _changes(config: RunConfig, *, flow: bool) -> list[str]:
    sections: list[str] = ["fast"] if config.method == "fast" else ["optim"]
    if config.method == "optim" and config.temporal.mode != "none":
        sections.append("temporal")
    if config.uses_flow and flow:
        sections.append("flow")
    out = []
    for name in sections:
        sec = getattr(config, name)
        default = type(sec)()
        for f in dataclasses.fields(sec):
            if f.name == "runtime" or (f.name == "stability" and not flow):
                continue  # how it runs, or what has no effect: not what it makes
            v = getattr(sec, f.name)
            if v != getattr(default, f.name):
                text = ",".join(map(str, v)) if isinstance(v, tuple) else (
                    Path(v).stem if f.name in ("model", "weights_path") else str(v))
                label = {"mode": "temporal", "method": "flow"}.get(f.name, f.name)
                out.append(re.sub(r"[^A-Za-z0-9.+-]+", "-", f"{label}{text}".replace("_", "")))
    return out


def run(
    input_path: str | Path,
    output_path: str | Path,
    config: RunConfig,
    *,
    pipeline: PipelineSpec | None = None,
    work_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    stylizer_factory: StylizerFactory | None = None,
    flow: FlowEstimator | None = None,
    segmenter: Segmenter | None = None,
    overwrite: bool = False,
    keep_work: bool = False,
) -> RunResult:
    """Stylize ``input_path`` (a video or a still image) into ``output_path``.

    ``pipeline``: the stages to run (default: the method's built-in pipeline);
    ``work_dir``: resumable artifacts (default ``.<output name>.vidstyle-work`` beside the
    output); ``stylizer_factory(config=, device=)`` and ``flow`` replace the real parts
    (tests); ``overwrite``: replace an existing output; ``keep_work``: keep the work
    folder after success. Raises VidstyleError subclasses for user-facing problems, all
    before any work starts where they can be known then.
    """
    progress = progress or no_progress
    config = resolved(config)
    spec = pipeline or PipelineSpec.builtin(config.method)
    spec.check(config)
    input_path, output_path = Path(input_path), Path(output_path)
    info = media.probe(input_path)
    media.check_output_path(output_path, input_path=input_path)
    if output_path.exists() and not overwrite:
        raise UsageError(f"{output_path} exists: pass --overwrite to replace it, or choose "
                         "another name with -o")
    wanted = info.frame_count if config.max_frames is None else min(info.frame_count or 1,
                                                                       config.max_frames)
    if media.is_image_path(output_path) and (wanted or 1) > 1:
        raise UsageError(f"{output_path.name} is a still image but {input_path.name} has "
                         f"{wanted} frames: use a video suffix, or --max-frames 1")
    if min(info.width or 1, info.height or 1) < 2 and config.method == "fast":
        raise UsageError(f"{input_path.name} is {info.width}x{info.height}: the fast "
                         "network needs at least 2x2 pixels")
    work = WorkDir(work_dir or default_work_dir(output_path))
    device = pick_device(config.device)
    motion = None
    if config.uses_flow and spec.has("flow"):
        motion = flow
        if motion is None:
            motion = flow_from_config(config.flow, device=device)
            motion.check()  # e.g. RAFT weights present: fail now, not after decoding
    if stylizer_factory is None:  # the stylizer's needs are known before it loads
        cls = stylizer_class(config)
        _prepare_work(work, cls.kind, cls.needs_for(config), config, work_dir=work_dir,
                      keep_work=keep_work)
    try:
        stylizer = (stylizer_factory or make_stylizer)(config=config, device=device)
        _prepare_work(work, stylizer.kind, stylizer.needs, config, work_dir=work_dir,
                      keep_work=keep_work)
        if not stylizer.needs.instances:
            segmenter = None
        elif segmenter is None:
            segmenter = make_segmenter(config.segment, device=device, frames=wanted,
                                       size=(info.height, info.width))
            segmenter.check()  # model files present, mask folder right: fail before work
    except BaseException:
        work.discard_created()  # nothing was done: leave no empty work folder behind
        raise
    _sweep_partial_outputs(output_path)
    # the segment stage lives in the work folder too
    cached = stylizer.needs.cache or segmenter is not None
    input_sha = sha256_file(input_path) if cached else ""  # hashed once per run
    try:
        people = None
        if segmenter is not None:
            people = _people(stylizer, segmenter, motion, input_path, input_sha, info, config,
                             work, progress)
        if stylizer.kind == "clip":
            result = _run_clip(stylizer, input_path, output_path, input_sha, info, config,
                               work, motion, progress, people)
        else:
            stage = None
            if stylizer.needs.cache:
                stage = work.stage("stylize", _stylize_fp(config, stylizer, input_sha))
                log.info("work directory %s (stylize %s)", work.root, stage.fingerprint)
            res = stream_frames(stylizer, input_path=input_path, output_path=output_path,
                                info=info, encode=config.encode, max_frames=config.max_frames,
                                flow=motion if stylizer.needs.flow else None,
                                masks=spec.has("masks"), cache=stage, progress=progress,
                                people=people.load if people is not None else None)
            result = RunResult(output_path, work.root if cached else None, res.frames,
                               res.computed, res.reused, tuple(res.cuts))
    except KeyboardInterrupt:
        if stylizer.needs.cache:
            raise Interrupted(f"interrupted; finished frames are kept in {work.root}: run "
                              "the same command again to resume") from None
        if segmenter is not None:
            raise Interrupted(f"interrupted; no output was written; the people found so far "
                              f"are kept in {work.root} (run the same command again to go "
                              "on)") from None
        raise Interrupted("interrupted; no output was written") from None
    if result.work_dir is not None and not keep_work:
        work.remove_stages()
        result = dataclasses.replace(result, work_dir=None)
    log.info("wrote %s (%d frames, %d computed, %d reused)", output_path, result.frames,
             result.computed, result.reused)
    return result


def _people(stylizer: Any, segmenter: Segmenter, motion: FlowEstimator | None,
            input_path: Path, sha: str, info: Any, config: RunConfig, work: WorkDir,
            progress: ProgressFn) -> PeopleTrack:
    """The segment stage of a per-person run (cached; checks the ``--instance`` ids);
    ``sha``: the input's SHA-256."""
    stage = work.stage("segment", segment_fingerprint(config, segmenter, motion, sha))
    total = frame_total(info, config.max_frames)
    people = track_people(lambda: media.iter_frames(input_path), prepare=stylizer.prepare,
                          segmenter=segmenter, flow=motion, config=config.segment,
                          fps=float(info.fps) if info.fps else None, input_sha256=sha,
                          stage=stage, max_frames=config.max_frames, total=total,
                          progress=progress)
    people.check_ids({pid for pid, _ in config.style.instances}, input_path.name)
    return people


def _prepare_work(work: WorkDir, kind: str, needs: StylizerNeeds, config: RunConfig, *,
                  work_dir: str | Path | None, keep_work: bool) -> None:
    """Create the work folder now when the stylizer keeps work (UsageError in one line
    when it cannot be made, or when a stage folder there was not made by vidstyle);
    ``--work-dir`` and ``--keep-work`` for a run that keeps no work folder are errors."""
    if not (needs.cache or needs.instances):
        for given, flag in ((work_dir is not None, "--work-dir"), (keep_work, "--keep-work")):
            if given:
                raise UsageError(f"{flag} has no effect: this run keeps no work folder (the "
                                 f"{config.method} method streams its frames)")
        return
    stages: tuple[str, ...] = ("stylize", "segment") if needs.instances else ("stylize",)
    if kind == "clip":
        passes = config.temporal.passes if config.temporal.mode != "none" else 1
        stages += ("decode", "flow") + tuple(f"pass_{k}" for k in range(passes - 1))
    work.create(stages)


def _stylize_fp(config: RunConfig, stylizer: Stylizer, input_sha: str) -> str:
    return fingerprint_of("stylize", config.stylize_fingerprint(), stylizer.fingerprint(),
                          input_sha, __version__)


def _run_clip(stylizer: Any, input_path: Path, output_path: Path, input_sha: str,
              info: Any, config: RunConfig, work: WorkDir, motion: FlowEstimator | None,
              progress: ProgressFn, people: PeopleTrack | None = None) -> RunResult:
    n_total = frame_total(info, config.max_frames)
    stage = work.stage("stylize", _stylize_fp(config, stylizer, input_sha))
    log.info("work directory %s (stylize %s)", work.root, stage.fingerprint)
    computed, reused = run_clip(
        stylizer, frames=lambda: limited(media.iter_frames(input_path), config.max_frames),
        stage=stage, work=work, n_frames=n_total, progress=progress, flow=motion,
        people=people.load if people is not None else None)
    count = computed + reused
    if count == 0:
        raise InputError(f"{input_path}: no frames could be decoded")
    with media.MediaWriter(output_path, source=info, encode=config.encode) as writer:
        for frame in limited(media.iter_frames(input_path), count):
            rgb = load_png(stage.path(frame_unit(frame.index)))
            alpha = None if frame.alpha is None else resize_uint8(frame.alpha, rgb.shape[:2])
            writer.write(dataclasses.replace(frame, rgb=rgb, alpha=alpha))
            progress(ProgressEvent("encode", frame.index + 1, count))
    return RunResult(output_path, work.root, count, computed, reused)


def _sweep_partial_outputs(output: Path) -> None:
    """Remove temp files a killed earlier run to the same output left behind."""
    pattern = f".{glob.escape(output.stem)}.*.part{glob.escape(output.suffix)}"
    for p in output.parent.glob(pattern):
        log.info("removing leftover partial output %s", p)
        p.unlink(missing_ok=True)


__all__ = [
    "PipelineSpec",
    "RunResult",
    "StyleSpec",
    "build_config",
    "default_output",
    "make_stylizer",
    "resolve_method",
    "resolved",
    "run",
    "stylizer_class",
]
