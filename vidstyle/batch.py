"""Folder processing: stylize every video and image under a folder, resumably.

``run_batch(in_dir, out_dir, config)`` mirrors the media files of ``in_dir`` (recursively,
hidden files and folders skipped) into ``out_dir`` with the same relative paths and
suffixes (a video in a container vidstyle does not write gets ``.mp4`` appended:
``a.mpg`` -> ``a.mpg.mp4``). Each
finished item leaves a receipt, ``out_dir/.vidstyle-batch/<relative path>.json``, holding
the item's fingerprint (the stylization and encoding settings, the style/model files'
SHA-256, the vidstyle version) and the input's and output's size, modification time and
SHA-256. A later run skips an item only when its fingerprint and both files still match
(a file whose size and modification time are unchanged is taken as unchanged, as black's
cache does; otherwise its SHA-256 decides); anything else is (re)computed, so changed
settings, a changed input or a deleted or altered output are redone and nothing else is.

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


def _output_name(path: Path) -> str:
    if media.is_image_path(path) or media.is_video_path(path):
        return path.name
    return path.name + ".mp4"


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
    items: list[BatchItem] = []
    claimed: dict[Path, Path] = {}
    for p in _walk(src, dst.resolve()):
        rel = p.relative_to(src)
        out_rel = rel.with_name(_output_name(p))
        if out_rel in claimed:
            raise UsageError(f"{claimed[out_rel]} and {rel} would both be written to "
                             f"{out_rel}: rename one")
        claimed[out_rel] = rel
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


def _file_record(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}


def _unchanged(path: Path, record: Any) -> bool:
    """Whether ``path`` still is the file ``record`` (from :func:`_file_record`) describes."""
    if not isinstance(record, dict) or not path.is_file():
        return False
    st = path.stat()
    if st.st_size != record.get("size"):
        return False
    return st.st_mtime_ns == record.get("mtime_ns") or sha256_file(path) == record.get("sha256")


def is_done(item: BatchItem, settings: str) -> bool:
    """Whether ``item``'s receipt matches ``settings``, its input and its output."""
    try:
        receipt = json.loads(item.receipt.read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(receipt, dict) and receipt.get("settings") == settings
            and _unchanged(item.input, receipt.get("input"))
            and _unchanged(item.output, receipt.get("output")))


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
            source = _file_record(item.input)  # before: the input may change meanwhile
            item.output.parent.mkdir(parents=True, exist_ok=True)
            res = run(item.input, item.output, config, work_dir=item.work_dir,
                      progress=progress, stylizer_factory=stylizer_factory)
            receipt = {
                "settings": settings,
                "item": str(item.rel),
                "input": source,
                "output": _file_record(res.output),
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
