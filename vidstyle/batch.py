"""Folder processing: stylize every video and image under a folder, resumably.

``run_batch(in_dir, out_dir, config)`` mirrors the media files of ``in_dir`` (recursively,
hidden files and folders skipped) into ``out_dir`` with the same relative paths and
suffixes (videos in a container vidstyle does not write, e.g. ``.mpg``, become ``.mp4``). Each
finished item leaves a receipt, ``out_dir/.vidstyle-batch/<relative path>.json``, holding
the item's fingerprint (the stylization and encoding settings, the input's and style/model
files' SHA-256, the vidstyle version) and the output's size and SHA-256. A later run skips
an item only when its receipt, its fingerprint and its output all still match; anything
else is (re)computed, so changed settings, a changed input or a deleted or altered output
are redone and nothing else is.

Crash or kill safety comes from the single-item pipeline (:func:`vidstyle.pipeline.run`):
outputs appear atomically when complete, and the optimization method keeps finished
frames in the item's work directory (``out_dir/.vidstyle-batch/work/<relative path>``),
so a killed item resumes where it stopped; the work directory is removed once the item's
receipt is written (``keep_work=True`` keeps it).

A bad input (unreadable, no frames, ...) is recorded and the batch goes on; the returned
:class:`BatchResult` lists the failures. KeyboardInterrupt stops the batch at once.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidstyle import __version__, media
from vidstyle.config import RunConfig, fingerprint_of
from vidstyle.errors import UsageError, VidstyleError
from vidstyle.pipeline import ProgressFn, run
from vidstyle.workdir import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

#: Folder inside OUT_DIR with the receipts and the work directories.
STATE_DIR = ".vidstyle-batch"
#: Video suffixes read besides the writable ones (vidstyle.media.VIDEO_SUFFIXES); their
#: outputs are .mp4.
READ_ONLY_VIDEO_SUFFIXES = (".mpg", ".mpeg", ".ts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv")


@dataclass(frozen=True)
class BatchItem:
    """One input file, its output and its receipt (all absolute paths)."""

    rel: Path
    input: Path
    output: Path
    receipt: Path
    work_dir: Path


@dataclass
class BatchResult:
    """What a batch did: relative paths done now, skipped as already done, and failed
    (relative path -> one-line reason)."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed)


def _is_media(path: Path) -> bool:
    return (media.is_image_path(path) or media.is_video_path(path)
            or path.suffix.lower() in READ_ONLY_VIDEO_SUFFIXES)


def _output_suffix(path: Path) -> str:
    return path.suffix if media.is_image_path(path) or media.is_video_path(path) else ".mp4"


def _walk(root: Path, skip: Path) -> Iterator[Path]:
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or p.resolve() == skip:
            continue
        if p.is_dir():
            yield from _walk(p, skip)
        elif p.is_file() and _is_media(p):
            yield p


def plan_batch(in_dir: str | Path, out_dir: str | Path) -> list[BatchItem]:
    """The items of a batch, in sorted path order. Raises UsageError for a missing input
    folder or an output folder equal to it (an output folder inside the input folder is
    fine: it is not read as input)."""
    src, dst = Path(in_dir), Path(out_dir)
    if not src.is_dir():
        raise UsageError(f"input folder {src} does not exist or is not a folder")
    if dst.resolve() == src.resolve():
        raise UsageError("the output folder must differ from the input folder")
    state = dst / STATE_DIR
    items = []
    for p in _walk(src, dst.resolve()):
        rel = p.relative_to(src)
        out_rel = rel.with_suffix(_output_suffix(p))
        items.append(BatchItem(
            rel=rel,
            input=p,
            output=dst / out_rel,
            receipt=state / "receipts" / f"{rel}.json",
            work_dir=state / "work" / rel,
        ))
    return items


def _file_identity(spec: str) -> str:
    """The SHA-256 of ``spec`` when it names a file, else ``spec`` itself."""
    p = Path(spec).expanduser()
    return f"sha256:{sha256_file(p)}" if p.is_file() else spec


def settings_fingerprint(config: RunConfig) -> str:
    """Everything of ``config`` that shapes an output file, with the style images and the
    fast model given by their content (a file replaced in place changes it)."""
    styles = []
    for part in config.style.split(","):
        name, sep, weight = part.strip().rpartition(":")
        if not sep or not name:  # no weight (or a bare path)
            name, weight = part.strip(), ""
        styles.append((_file_identity(name), weight))
    model = _file_identity(config.fast.model) if config.fast.model else "shipped-default"
    return fingerprint_of("batch", config.stylize_fingerprint(), config.encode,
                          config.max_frames, styles, model, __version__)


def _output_record(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def is_done(item: BatchItem, settings: str) -> bool:
    """Whether ``item``'s receipt matches ``settings``, its input and its output."""
    try:
        receipt = json.loads(item.receipt.read_text())
        if receipt.get("settings") != settings or not item.output.is_file():
            return False
        if receipt.get("output_size") != item.output.stat().st_size:
            return False  # cheap check first
        return (receipt.get("input_sha256") == sha256_file(item.input)
                and receipt.get("output_sha256") == sha256_file(item.output))
    except (OSError, ValueError, AttributeError):
        return False


def run_batch(
    in_dir: str | Path,
    out_dir: str | Path,
    config: RunConfig,
    *,
    keep_work: bool = False,
    progress: ProgressFn | None = None,
    on_item: Callable[[int, int, BatchItem, str], None] | None = None,
    stylizer_factory: Callable[..., Any] | None = None,
) -> BatchResult:
    """Stylize every media file under ``in_dir`` into ``out_dir`` (see the module doc).

    on_item(index, count, item, status) is called before each item ("start" or "skip") and
    after it ("done" or "failed: <reason>"); ``progress`` receives the per-frame events of
    the item being processed.
    """
    items = plan_batch(in_dir, out_dir)
    settings = settings_fingerprint(config)
    result = BatchResult()
    note = on_item or (lambda *_: None)
    for i, item in enumerate(items, 1):
        if is_done(item, settings):
            result.skipped.append(item.rel)
            note(i, len(items), item, "skip")
            continue
        note(i, len(items), item, "start")
        try:
            item.output.parent.mkdir(parents=True, exist_ok=True)
            res = run(item.input, item.output, config, work_dir=item.work_dir,
                      progress=progress, stylizer_factory=stylizer_factory)
            record = _output_record(res.output)
            receipt = {
                "settings": settings,
                "input": str(item.rel),
                "input_sha256": sha256_file(item.input),
                "output": str(res.output.relative_to(Path(out_dir))),
                "output_size": record["size"],
                "output_sha256": record["sha256"],
                "frames": res.frames,
                "vidstyle": __version__,
            }
            atomic_write_bytes(item.receipt, json.dumps(receipt, indent=1).encode())
        except VidstyleError as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            result.failed[item.rel] = reason
            log.info("%s: %s", item.rel, reason)
            note(i, len(items), item, f"failed: {reason}")
            continue
        if not keep_work and item.work_dir.exists():
            shutil.rmtree(item.work_dir, ignore_errors=True)
        result.done.append(item.rel)
        note(i, len(items), item, "done")
    return result


__all__ = ["STATE_DIR", "BatchItem", "BatchResult", "is_done", "plan_batch", "run_batch",
           "settings_fingerprint"]
