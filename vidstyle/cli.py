"""Command-line interface: a thin click layer over the library.

Only this module knows about the terminal. Library errors (VidstyleError) become one-line
messages with their exit code; anything else is a bug and shows a traceback only with
``--debug``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import click

from vidstyle import __version__
from vidstyle.config import (
    BatchConfig,
    ExploreConfig,
    FlowConfig,
    RunConfig,
    Setting,
    check_output_settings,
    flag_of,
    section_type,
    settings,
)
from vidstyle.errors import InputError, Interrupted, UsageError, VidstyleError
from vidstyle.fast.train.config import TRAIN_GROUPS, TrainConfig, parse_pairs

log = logging.getLogger("vidstyle")


class _Group(click.Group):
    """Turns library errors into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except Interrupted as exc:
            if debug:
                raise
            click.echo(f"vidstyle: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except VidstyleError as exc:
            if debug:
                raise
            click.echo(f"vidstyle: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("vidstyle: interrupted", err=True)
            ctx.exit(Interrupted.exit_code)
        except MemoryError:
            click.echo("vidstyle: error: out of memory: try a smaller --size", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidstyle")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Paint videos and photos in the style of an artwork.

    \b
    Example:
      vidstyle run clip.mp4 --style starry
      vidstyle run photo.jpg -o photo_starry.png --style wave --size 768
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = {"debug": debug}


# -- options generated from the config dataclasses ---------------------------------------

#: Help sections, in order; options of other groups go under "Other".
GROUPS = ("Common", "People", "Output", "Video", "Fast network", "Adjustable style",
          "Optimization", "Run", "Batch", "Other")


class _Option(click.Option):
    """A click option with a help-section ``group`` and an ``example``."""

    def __init__(self, *args: Any, group: str = "Other", example: str = "",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group
        self.example = example

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        rec = super().get_help_record(ctx)
        if rec is None or not self.example:
            return rec
        return rec[0], f"{rec[1]}  e.g. {self.example}"


class _Command(click.Command):
    """Prints options in sections (``_Option.group``, in the order of ``groups``)."""

    groups: tuple[str, ...] = GROUPS

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Argument):
                continue  # named in the usage line, not an option
            rec = param.get_help_record(ctx)
            if rec is not None:
                group = param.group if isinstance(param, _Option) else "Other"
                sections.setdefault(group if group in self.groups else "Other", []).append(rec)
        for name in self.groups:
            if name in sections:
                with formatter.section(f"{name} options"):
                    formatter.write_dl(sections[name])


def _param_name(flag: str) -> str:
    return "cfg_" + flag.lstrip("-").replace("-", "_")


def _comma_list(item: type) -> Callable[..., Any]:
    def convert(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return tuple(item(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected a comma-separated list, e.g. "
                                     f"{getattr(param, 'example', '')}") from None
    return convert


def _shown_default(s: Setting) -> str:
    if s.flag == "--flow-preset":
        return "the method's own"
    if len(s.targets) > 1:  # one flag, a field per method: show each method's default
        shown = {section: _text(getattr(section_type(section)(), name), "input size")
                 for section, name in s.targets}
        if len(set(shown.values())) == 1:
            return next(iter(shown.values()))
        return "; ".join(f"{k}: {v}" for k, v in shown.items())
    return _text(s.default, "none")


def _text(value: Any, none: str = "none") -> str:
    if value is None:
        return none
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "the network's"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _unoptional(hint: Any) -> Any:
    """``X`` for a type hint ``X | None`` (or ``Optional[X]``); any other hint as it is."""
    inner = [a for a in get_args(hint) if a is not type(None)]
    return inner[0] if get_origin(hint) in (Union, UnionType) and len(inner) == 1 else hint


def _setting_option(s: Setting) -> Callable[..., Any]:
    """The click option of one config setting (type, help, default shown, method)."""
    base = _unoptional(s.hint)
    kw: dict[str, Any] = {"default": None, "group": s.group, "metavar": s.metavar}
    only = "" if len(s.methods) > 1 else f" ({s.methods[0]} method)"
    help_text = f"{s.help}{only} [default: {_shown_default(s)}]"
    example = ""
    meta_example = _example_of(s)
    decls = [s.flag, _param_name(s.flag)]
    if base is bool:
        if s.default is True:
            decls = [f"{s.flag}/--no-{s.flag[2:]}", _param_name(s.flag)]
            example = f"--no-{s.flag[2:]}"
        else:
            kw["is_flag"] = True
            example = s.flag
        kw.pop("metavar")
    elif get_origin(base) is Literal:
        kw["type"] = click.Choice([str(a) for a in get_args(base)])
        kw.pop("metavar")
    elif get_origin(base) is tuple:
        kw["callback"] = _comma_list(get_args(base)[0])
        kw["metavar"] = s.metavar or "LIST"
    elif base in (int, float):
        kw["type"] = base
    if not example and meta_example:
        example = f"{s.flag} {meta_example}"
    return click.option(*decls, cls=_Option, help=help_text, example=example, **kw)


def _example_of(s: Setting) -> str:
    section, name = s.targets[-1]
    f = next(f for f in dataclasses.fields(section_type(section)) if f.name == name)
    return str(f.metadata.get("example", ""))


def _stylize_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The stylization options shared by ``run`` and ``batch``, one per config setting."""
    options = [_setting_option(s) for s in settings()]
    options.append(click.option(
        "--instance", "cfg_instance", multiple=True, cls=_Option, group="People",
        metavar="ID=STYLE", example="--instance 1=wave --instance 2=scream:0.5,udnie:0.5",
        help="Give person ID its own style (any style spec, mixes included; repeatable). "
             "Ids are numbered left to right where people first appear: see `vidstyle "
             "masks`. Others keep --style."))
    options.append(click.option(
        "--background", "cfg_background", default=None, cls=_Option, group="People",
        metavar="STYLE|none", example="--background none",
        help="Style outside every person (none: keep the original pixels) [default: "
             "--style]."))
    options.append(click.option(
        "--pipeline", type=click.Path(path_type=Path), default=None, cls=_Option,
        group="Run", example="--pipeline my.toml",
        help="Pipeline file (TOML): stages and overrides, instead of the method's built-in "
             "one (see vidstyle/data/pipelines/)."))
    for option in reversed(options):
        f = option(f)
    return f


def _values(opts: dict[str, Any]) -> dict[str, Any]:
    """Flag -> value of the config options given (None: not given); removes them from
    ``opts``."""
    values = {}
    for s in settings():
        value = opts.pop(_param_name(s.flag), None)
        if s.flag == "--flow-weights" and value is not None:
            value = str(value)
        values[s.flag] = value
    values["--instance"] = tuple(opts.pop("cfg_instance", ()) or ()) or None
    values["--background"] = opts.pop("cfg_background", None)
    return values


def _run_config(pipeline: Path | None, opts: dict[str, Any]) -> tuple[RunConfig, Any]:
    """The RunConfig of the generated options and a pipeline file (validated), and the
    PipelineSpec to run (the file's, or the method's built-in one)."""
    from vidstyle.engine import build_config

    return build_config(_values(opts), pipeline=pipeline)


def _given(opts: dict[str, Any]) -> set[str]:
    """The flags of the config options given (before :func:`_values` removes them)."""
    return {s.flag for s in settings() if opts.get(_param_name(s.flag)) is not None}


def _run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--work-dir", type=click.Path(path_type=Path), default=None, cls=_Option,
                     group="Run", example="--work-dir /scratch/w",
                     help="Folder for resumable artifacts [default: .<output>.vidstyle-work "
                          "beside the output]."),
        click.option("--keep-work", is_flag=True, cls=_Option, group="Run",
                     example="--keep-work",
                     help="Keep the work folder (finished frames) after success."),
        click.option("--overwrite", is_flag=True, cls=_Option, group="Output",
                     example="--overwrite", help="Replace an existing output file."),
        click.option("-q", "--quiet", is_flag=True, cls=_Option, group="Run",
                     example="-q", help="No progress bars."),
    ]):
        f = option(f)
    return f


@cli.command(cls=_Command)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), cls=_Option, group="Output",
              example="-o out.mp4",
              help="Output file [default: INPUT_<style>_<method>[_<changed settings>].<ext> "
                   "beside the input].")
@_stylize_options
@_run_options
def run(input_path: Path, output: Path | None, pipeline: Path | None, work_dir: Path | None,
        keep_work: bool, overwrite: bool, quiet: bool, **opts: Any) -> None:
    """Stylize a video or a still image.

    \b
    Examples:
      vidstyle run clip.mp4 --style starry
      vidstyle run photo.jpg -o out.png --style scream --size 512 --method optim
      vidstyle run clip.mp4 --style my_painting.jpg --temporal long --passes 3
      vidstyle run clip.mp4 --style starry:0.6,wave:0.4 --strength 0.8
    """
    from vidstyle import media
    from vidstyle.engine import default_output
    from vidstyle.engine import run as run_engine

    given = _given(opts)
    cfg, spec = _run_config(pipeline, opts)
    output = output or default_output(input_path, cfg, pipeline=spec)
    check_output_settings(given, output=output.name, still=media.is_image_path(output))
    if cfg.fast.variations:
        _run_variations(input_path, output, cfg, spec, work_dir=work_dir, keep_work=keep_work,
                        overwrite=overwrite, quiet=quiet)
        return
    with _Progress(quiet) as bar:
        result = run_engine(input_path, output, cfg, pipeline=spec, work_dir=work_dir,
                            progress=bar, overwrite=overwrite, keep_work=keep_work)
    if result.work_dir is None:
        click.echo(f"wrote {result.output} ({result.frames} frame(s), method {cfg.method})")
    else:
        click.echo(f"wrote {result.output} ({result.frames} frame(s), method {cfg.method}; "
                   f"{result.computed} computed, {result.reused} reused; work kept in "
                   f"{result.work_dir})")


def _field_options(cls: type) -> Callable[..., Any]:
    """One click option per flagged field of the config dataclass ``cls`` (help, section,
    example and shown default from the field's metadata); values land in ``opts`` as
    ``cfg_<flag>`` (None: not given)."""
    hints = typing.get_type_hints(cls)
    defaults = cls()

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        options = []
        for fld in dataclasses.fields(cls):
            flag = flag_of(fld)
            if flag is None:
                continue
            meta, base = fld.metadata, _unoptional(hints[fld.name])
            kw: dict[str, Any] = {"default": None, "metavar": meta["metavar"]}
            if get_origin(base) is Literal:
                kw.update(type=click.Choice([str(a) for a in get_args(base)]), metavar=None)
            elif base in (int, float):
                kw["type"] = base
            shown = _text(getattr(defaults, fld.name))
            options.append(click.option(
                flag, _param_name(flag), cls=_Option, group=meta["group"] or "Other",
                example=f"{flag} {meta['example']}" if meta["example"] else "",
                help=f"{meta['help']} [default: {shown}]", **kw))
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _field_values(cls: type, opts: dict[str, Any]) -> Any:
    """The ``cls`` config of the options :func:`_field_options` made (validated; those
    not given keep their defaults); removes them from ``opts``."""
    given = {}
    for fld in dataclasses.fields(cls):
        flag = flag_of(fld)
        if flag is not None:
            value = opts.pop(_param_name(flag), None)
            if value is not None:
                given[fld.name] = value
    return cls(**given)


class _BatchBar:
    """The driver's view of a parallel batch: one overall tqdm bar (frames, ETA, tasks
    running) with a line per item above it."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def __enter__(self) -> _BatchBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def progress(self, p: Any) -> None:  # a BatchProgress
        if self.quiet:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=p.total, desc="batch", unit="frame")
        self.bar.total = p.total
        self.bar.n = p.done
        self.bar.set_postfix_str(f"{p.running} running", refresh=False)
        self.bar.refresh()

    def line(self, text: str, *, err: bool) -> None:
        if self.bar is None:
            click.echo(text, err=err)
            return
        from tqdm import tqdm

        with tqdm.external_write_mode():
            click.echo(text, err=err)


def _run_variations(input_path: Path, output: Path, cfg: RunConfig, spec: Any, *,
                    work_dir: Path | None, keep_work: bool, overwrite: bool,
                    quiet: bool) -> None:
    """``--variations K``: K runs, each with its own seeded random layer weights."""
    from vidstyle.engine import run as run_engine
    from vidstyle.fast.variations import variation_plan

    plan = variation_plan(cfg, output)
    for _, out, _ in plan:  # refuse before any work, not after the first outputs
        if out.exists() and not overwrite:
            raise UsageError(f"{out} exists: pass --overwrite to replace it, or choose "
                             "another -o")
    for cfg_k, out, weights in plan:
        with _Progress(quiet) as bar:
            result = run_engine(input_path, out, cfg_k, pipeline=spec, work_dir=work_dir,
                                progress=bar, overwrite=overwrite, keep_work=keep_work)
        click.echo(f"wrote {result.output} ({result.frames} frame(s), layer weights "
                   f"{','.join(f'{w:g}' for w in weights)})")


@cli.command(cls=_Command)
@click.argument("in_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@_stylize_options
@_field_options(BatchConfig)
@click.option("--keep-work", is_flag=True, cls=_Option, group="Run", example="--keep-work",
              help="Keep each item's work folder (finished frames) after it is done.")
@click.option("--dry-run", is_flag=True, cls=_Option, group="Run", example="--dry-run",
              help="Only list each item as done or to do; stylize nothing.")
@click.option("--overwrite", is_flag=True, cls=_Option, group="Output", example="--overwrite",
              help="Replace output files that a batch did not write (a batch's own outputs "
                   "are redone when their settings or input changed).")
@click.option("-q", "--quiet", is_flag=True, cls=_Option, group="Run", example="-q",
              help="No progress bars.")
def batch(in_dir: Path, out_dir: Path, pipeline: Path | None, keep_work: bool, dry_run: bool,
          overwrite: bool, quiet: bool, **opts: Any) -> None:
    """Stylize every video and image under IN_DIR into OUT_DIR (same relative paths).

    Resumable: run the same command again after a crash or kill and finished items are
    skipped (a receipt in OUT_DIR/.vidstyle-batch/ records each one's settings and
    output); an interrupted video continues from its finished frames (optim method) or
    chunks. Changed settings, a changed input or a deleted output are redone. A bad input
    is reported and the others go on; the exit code is then 1. A JSON report of every
    item is written to OUT_DIR/.vidstyle-batch/report.json.

    Scale out with --jobs N (processes on this machine) or --backend ray (a Ray cluster:
    started here, or joined with --ray-address; OUT_DIR must then be storage every
    worker sees). --chunk-frames N splits long fast-method videos across workers.

    \b
    Examples:
      vidstyle batch clips/ styled/ --style starry
      vidstyle batch photos/ photos_wave/ --style wave --method optim --size 768
      vidstyle batch clips/ styled/ --style wave --jobs 2
      vidstyle batch /shared/clips /shared/styled --backend ray --ray-address head:6379
    """
    from vidstyle.batch import is_done, plan_batch, run_batch, settings_fingerprint

    bcfg = _field_values(BatchConfig, opts)
    cfg, spec = _run_config(pipeline, opts)
    if dry_run:
        items, settings_fp = plan_batch(in_dir, out_dir), settings_fingerprint(cfg, spec)
        todo = 0
        for i, item in enumerate(items, 1):
            done = is_done(item, settings_fp)
            todo += not done
            click.echo(f"[{i}/{len(items)}] {item.rel}: "
                       f"{'done' if done else 'to do -> ' + str(item.output)}")
        click.echo(f"{todo} to do, {len(items) - todo} done, of {len(items)} in {in_dir}")
        return

    with _Progress(quiet) as bar, _BatchBar(quiet) as overall:

        def on_item(i: int, n: int, item: Any, status: str) -> None:
            if status == "start":
                bar.reset()  # fresh bars (totals) for each item
                return
            shown = "already done, skipped" if status == "skip" else status
            overall.line(f"[{i}/{n}] {item.rel}: {shown}", err=status.startswith("failed"))

        res = run_batch(in_dir, out_dir, cfg, pipeline=spec, batch=bcfg, keep_work=keep_work,
                        overwrite=overwrite, progress=bar, on_item=on_item,
                        on_progress=overall.progress)
    click.echo(f"{len(res.done)} done, {len(res.skipped)} already done, "
               f"{len(res.failed)} failed, of {res.total} in {in_dir}; report {res.report}")
    if res.failed:
        raise InputError(f"{len(res.failed)} item(s) failed (listed above); fix or remove "
                         "them and run the same command again")


@cli.command(cls=_Command)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              cls=_Option, group="Output", example="-o masks/",
              help="Folder for the masks: per frame an id PNG (pixel = person id, 0 = "
                   "background) and a coloured *_overlay.png preview with the ids drawn.")
@click.option("--size", type=int, default=None, cls=_Option, group="Common",
              example="--size 640", help="Longest side in pixels, as given to `vidstyle run` "
                                         "(the same size gives the same ids) [default: input "
                                         "size].")
@click.option("--max-frames", type=int, default=None, cls=_Option, group="Common",
              example="--max-frames 30", help="Only the first N frames.")
@click.option("--segmenter", type=click.Choice(["mediapipe", "maskrcnn", "matte"]),
              default=None,
              cls=_Option, group="People", example="--segmenter maskrcnn",
              help="Person segmentation backend [default: mediapipe].")
@click.option("--mask-weights", type=click.Path(path_type=Path), default=None, cls=_Option,
              group="People", example="--mask-weights maskrcnn.pth",
              help="Mask R-CNN weights file (--segmenter maskrcnn).")
@click.option("--overwrite", is_flag=True, cls=_Option, group="Output", example="--overwrite",
              help="Replace existing mask files.")
@click.option("-q", "--quiet", is_flag=True, cls=_Option, group="Run", example="-q",
              help="No progress bars.")
def masks(input_path: Path, out_dir: Path, size: int | None, max_frames: int | None,
          segmenter: str | None, mask_weights: Path | None, overwrite: bool,
          quiet: bool) -> None:
    """Find the people of a video or photo and write their masks and numbered previews,
    to pick ids for `vidstyle run --instance ID=STYLE`.

    \b
    Examples:
      vidstyle masks clip.mp4 -o clip_masks/
      vidstyle masks photo.jpg -o masks/ --size 768
    """
    from vidstyle.engine import build_config
    from vidstyle.engine.people import export_masks

    values: dict[str, Any] = {"--size": size, "--max-frames": max_frames,
                              "--segmenter": segmenter, "--background": "none",
                              "--mask-weights": str(mask_weights) if mask_weights else None,
                              "--method": "fast"}
    cfg, _ = build_config(values)
    with _Progress(quiet) as bar:
        people = export_masks(input_path, out_dir, cfg, progress=bar, overwrite=overwrite)
    ids = ", ".join(f"{pid} (frames {fr[0]}-{fr[-1]})" for pid, fr in sorted(people.seen.items()))
    click.echo(f"wrote masks of {people.frames} frame(s) to {out_dir}: "
               f"{len(people.seen)} people: {ids or 'none'}")


class _Progress:
    """tqdm bars per stage (frames) and per optimizer iteration."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: dict[str, object] = {}

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()

    def reset(self) -> None:
        """Close the bars; the next events open new ones."""
        for bar in self.bars.values():
            bar.close()  # type: ignore[attr-defined]
        self.bars.clear()

    def __call__(self, ev) -> None:  # noqa: ANN001
        if self.quiet:
            return
        from tqdm import tqdm

        if ev.iteration is not None:
            bar = self.bars.get("iter")
            if bar is None or bar.total != ev.iterations:  # type: ignore[attr-defined]
                if bar is not None:
                    bar.close()  # type: ignore[attr-defined]
                bar = tqdm(total=ev.iterations, desc="  iterations", leave=False,
                           unit="it", position=1)
                self.bars["iter"] = bar
            bar.n = ev.iteration  # type: ignore[attr-defined]
            bar.set_postfix_str(ev.detail, refresh=False)  # type: ignore[attr-defined]
            bar.refresh()  # type: ignore[attr-defined]
            return
        bar = self.bars.get(ev.stage)
        if bar is None:
            bar = tqdm(total=ev.total, desc=ev.stage, unit="frame", position=0)
            self.bars[ev.stage] = bar
        bar.n = ev.done  # type: ignore[attr-defined]
        bar.refresh()  # type: ignore[attr-defined]


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
def info(input_path: Path) -> None:
    """Print what was probed in a video or image.

    \b
    Example:
      vidstyle info clip.mp4
    """
    from vidstyle import media

    click.echo(media.probe(input_path).describe())


@cli.command(cls=_Command)
@click.option("--layers", is_flag=True, cls=_Option, group="Common", example="--layers",
              help="Print the style layers of the adjustable model instead, in "
                   "--layer-weights order, with each style's default weight.")
@click.option("--model", default=None, cls=_Option, group="Common", metavar="MODEL",
              example="--layers --model runs/adj/model.pt",
              help="With --layers: the adjustable model [default: the shipped one].")
def styles(layers: bool, model: str | None) -> None:
    """List named styles and which methods support them.

    \b
    Examples:
      vidstyle styles
      vidstyle styles --layers
    """
    from vidstyle.engine.spec import shipped_fast_styles
    from vidstyle.styles import list_styles

    if model is not None and not layers:
        raise UsageError("--model applies to --layers only")
    if layers:
        from vidstyle.fast.variations import adjustable_model, layers_text

        loaded, name = adjustable_model(model)
        click.echo(f"style layers of {name} (vidstyle run --layer-weights W1,W2,... in "
                   "this order; trained 0..1, default per style below):")
        for line in layers_text(loaded):
            click.echo(line)
        return

    fast = shipped_fast_styles()
    click.echo(f"{'name':<16} {'methods':<11} {'artist':<20} {'year':<8} source")
    for s in list_styles():
        methods = "optim,fast" if s.name in fast else "optim"
        click.echo(f"{s.name:<16} {methods:<11} {s.artist:<20} {s.year:<8} {s.source}")


@cli.command()
@click.option("--downloads", type=click.Path(path_type=Path), default=None,
              help="Folder that already holds the downloaded archives.")
def setup(downloads: Path | None) -> None:
    """Fetch the offline VGG weights and person models once into $VIDSTYLE_HOME.

    \b
    Example:
      vidstyle setup
    """
    from vidstyle.segment.models import fetch_mediapipe_models
    from vidstyle.weights import fetch_offline_weights

    for r in fetch_offline_weights(downloads_dir=downloads):
        click.echo(f"{r.name}: {r.path} (sha256 {r.sha256[:12]}..., {r.source})")
    models = fetch_mediapipe_models(downloads_dir=downloads)
    click.echo(f"person segmentation models: {models.detector.parent}")


#: The demo's own output file (in the current folder): replaced without --overwrite.
DEMO_OUTPUT = Path("vidstyle_demo.mp4")


@cli.command(cls=_Command)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, cls=_Option,
              group="Output", example="-o bunny.mp4",
              help=f"Where to write the demo clip [default: ./{DEMO_OUTPUT}, replaced when "
                   "it exists].")
@click.option("--style", default="starry", cls=_Option, group="Common", example="--style wave",
              help="Style name (see `vidstyle styles`), image path or mix [default: starry].")
@click.option("--overwrite", is_flag=True, cls=_Option, group="Output",
              example="-o bunny.mp4 --overwrite",
              help="Replace an existing -o file (the default output is always replaced).")
@click.option("-q", "--quiet", is_flag=True, cls=_Option, group="Run", example="-q",
              help="No progress bars.")
def demo(output: Path | None, style: str, overwrite: bool, quiet: bool) -> None:
    """Stylize the bundled Big Buck Bunny sample clip (with its audio). The default output
    ./vidstyle_demo.mp4 is replaced when it exists (it is the demo's own file); another
    -o file only with --overwrite.

    \b
    Examples:
      vidstyle demo --style wave
      vidstyle demo -o bunny_scream.mp4 --style scream
    """
    from vidstyle.demo import demo_config, demo_input
    from vidstyle.engine import run as run_engine

    cfg = demo_config(style)
    with _Progress(quiet) as bar:
        result = run_engine(demo_input(), output or DEMO_OUTPUT, cfg, progress=bar,
                            overwrite=overwrite or output is None)
    click.echo(f"demo written to {result.output.resolve()} ({result.frames} frames, "
               f"method {cfg.method}, style {style})")


def _config_options(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options of a settings dataclass (``setting()`` fields of config.py): flag, help,
    section, example and shown default from the dataclass; parameters named as the fields
    (None: not given)."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    options = []
    for fld in dataclasses.fields(cls):
        flag = flag_of(fld)
        if flag is None:
            continue
        meta = fld.metadata
        base = _unoptional(hints[fld.name])
        kw: dict[str, Any] = {"default": None, "metavar": meta["metavar"]}
        if base in (int, float):
            kw["type"] = base
        shown = f" [default: {_text(getattr(defaults, fld.name))}]"
        help_text = meta["help"] if "[default:" in meta["help"] else meta["help"] + shown
        options.append(click.option(
            flag, fld.name, cls=_Option, group=meta["group"] or "Other",
            example=f"{flag} {meta['example']}", help=help_text,
            **kw))

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


class _ExploreCommand(_Command):
    groups = ("Common", "Grid", "Output")


@cli.command(cls=_ExploreCommand)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, cls=_Option,
              group="Output", example="-o grid.png", help="The grid image (PNG or JPEG).")
@click.option("--overwrite", is_flag=True, cls=_Option, group="Output",
              example="--overwrite", help="Replace an existing output file.")
@_config_options(ExploreConfig)
def explore(input_path: Path, output: Path, overwrite: bool, **opts: Any) -> None:
    """Write a grid of INPUT (an image) stylized by the adjustable model while two style
    layers' weights sweep 0..1, rows and columns labelled, to pick --layer-weights by eye.

    \b
    Examples:
      vidstyle explore photo.jpg --style starry -o grid.png
      vidstyle explore photo.jpg --style scream --rows relu2_1 --cols relu3_1 --steps 4 \\
          -o grid.png
    """
    from vidstyle import media
    from vidstyle.fast.variations import explore as explore_image
    from vidstyle.fileio import atomic_path

    if not media.is_image_path(output):
        raise UsageError(f"-o {output}: the grid is an image (.png or .jpg)")
    if not media.is_image_path(input_path):
        raise UsageError(f"{input_path}: explore takes an image")
    _refuse_existing([output], overwrite)
    cfg = ExploreConfig(**{k: v for k, v in opts.items() if v is not None})
    grid = explore_image(input_path, cfg)
    with atomic_path(output, suffix=output.suffix) as tmp:
        grid.save(tmp)
    click.echo(f"wrote {output} ({cfg.steps}x{cfg.steps}: rows {cfg.rows}, columns "
               f"{cfg.cols})")


class _TrainCommand(_Command):
    groups = TRAIN_GROUPS


def _train_default(value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _train_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The ``train`` options, one per TrainConfig field with a flag (help, section, example
    and shown default from the dataclass), then ``--set`` for the other fields."""
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    options = []
    others = []
    for fld in dataclasses.fields(TrainConfig):
        flag = flag_of(fld)
        if flag is None:
            others.append(fld.name)
            continue
        meta = fld.metadata
        base = _unoptional(hints[fld.name])
        kw: dict[str, Any] = {"default": None, "metavar": meta["metavar"]}
        example = f"{flag} {meta['example']}"
        if base is bool:
            kw.update(is_flag=True, default=False, metavar=None)
            example = flag
        elif get_origin(base) is Literal:
            kw.update(type=click.Choice([str(a) for a in get_args(base)]), metavar=None)
        elif get_origin(base) is tuple and meta["repeat"]:
            kw["multiple"] = True
        elif get_origin(base) is tuple:
            kw["callback"] = _comma_list(get_args(base)[0])
        elif base in (int, float):
            kw["type"] = base
        default = _train_default(getattr(defaults, fld.name))
        options.append(click.option(
            flag, fld.name, cls=_Option, group=meta["group"] or "Other", example=example,
            help=f"{meta['help']} [default: {default}]", **kw))
    options.append(click.option(
        "--set", "pairs", multiple=True, metavar="FIELD=VALUE", cls=_Option, group="Other",
        example="--set lr=5e-4 --set channels=32,64,128",
        help="Any other setting (repeatable; lists comma-separated): "
             f"{', '.join(others)}."))
    for option in reversed(options):
        f = option(f)
    return f


@cli.command(cls=_TrainCommand)
@_train_options
def train(pairs: tuple[str, ...], **opts: Any) -> None:
    """Train the multi-style fast network (resumable), add a style to one, or train an
    adjustable one (per-layer style weights as inputs, --adjustable).

    \b
    Examples:
      vidstyle train --styles starry,scream,wave --content-dir photos/ --steps 10000 \\
          --size 256 --batch 8 --out runs/mine
      vidstyle train --out runs/mine --resume
      vidstyle train --add-style mine=painting.jpg --from vidstyle/data/weights/fast7.pt \\
          --content-dir photos/ --out runs/added
      vidstyle train --teacher fast7 --set outer_kernel=5 --set style_weight=0 \\
          --set content_weight=0 --content-dir photos/ --out runs/k5
      vidstyle train --adjustable --from fast7 --styles starry,scream,wave \\
          --content-dir photos/ --style-weight 100 --out runs/adj
    """
    from vidstyle.fast.train import format_progress, saved_config
    from vidstyle.fast.train import train as run_train

    # options given (False / () / None: not given), over --set values
    changes = {**parse_pairs(pairs),
               **{k: v for k, v in opts.items() if v is not None and v != () and v is not False}}
    base = TrainConfig()
    if changes.get("resume"):
        # continue with the run's own settings (from --out, --set out_dir=... or the
        # default folder); options given again override them
        base = saved_config(changes.get("out_dir", base.out_dir)) or base
    cfg = dataclasses.replace(base, **changes)

    def report(p) -> None:  # noqa: ANN001 - a TrainProgress, every log_every steps
        click.echo(format_progress(p))

    result = run_train(cfg, progress=report)
    click.echo(f"model {result.model_path} (sha256 {result.model_sha256[:12]}..., "
               f"{result.steps} steps{', stopped early' if result.stopped_early else ''})")


@cli.group(name="eval")
def eval_group() -> None:
    """Evaluation: temporal warping error, optical-flow accuracy, shot cuts.

    \b
    Examples:
      vidstyle eval warp-error stylized.mp4 --source clip.mp4 --csv err.csv --plot err.png
      vidstyle eval flow ../shared/data/flow/sintel/training
      vidstyle eval cuts clip.mp4
    """


def _flow_settings() -> list[Setting]:
    """The FlowConfig settings (``--flow``, ``--flow-preset``, ...), as `run` has them."""
    return [s for s in settings() if s.targets[0][0] == "flow"]


def _flow_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for s in reversed(_flow_settings()):
        f = _setting_option(s)(f)
    return f


def _flow_config(opts: dict[str, Any]) -> FlowConfig:
    """The FlowConfig of the generated flow options given (validated); removes them from
    ``opts``."""
    fields = {}
    for s in _flow_settings():
        value = opts.pop(_param_name(s.flag), None)
        if value is not None:
            fields[s.targets[0][1]] = str(value) if s.flag == "--flow-weights" else value
    return FlowConfig(**fields)


def _refuse_existing(paths: list[Path | None], overwrite: bool) -> None:
    for p in paths:
        if p is not None and p.exists() and not overwrite:
            raise UsageError(f"{p} exists: pass --overwrite to replace it, or choose "
                             "another name")


@eval_group.command(name="warp-error", cls=_Command)
@click.argument("stylized", type=click.Path(path_type=Path))
@click.option("--source", required=True, type=click.Path(path_type=Path), cls=_Option,
              group="Common", example="--source clip.mp4",
              help="The original clip the stylized one was made from.")
@_flow_options
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None,
              cls=_Option, group="Output", example="--csv err.csv",
              help="Also write the error of each frame pair as CSV.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              cls=_Option, group="Output", example="--plot err.png",
              help="Also write a plot of the error per frame pair (PNG).")
@click.option("--overwrite", is_flag=True, cls=_Option, group="Output",
              example="--csv err.csv --overwrite",
              help="Replace existing --csv and --plot files.")
def warp_error_cmd(stylized: Path, source: Path, csv_path: Path | None,
                   plot_path: Path | None, overwrite: bool, **opts: Any) -> None:
    """Temporal warping error (Lai et al. 2018) of STYLIZED against its --source.

    A clip made with --size or --max-frames is compared with the source resized to its
    size and cut to its length (a warning says so). The flow options are `vidstyle run`'s.

    \b
    Examples:
      vidstyle eval warp-error out.mp4 --source clip.mp4 --plot err.png
      vidstyle eval warp-error out.mp4 --source clip.mp4 --flow deepflow --csv err.csv
    """
    from vidstyle.evaluate import warp_error_of_files
    from vidstyle.flow import flow_from_config

    _refuse_existing([csv_path, plot_path], overwrite)
    flow = flow_from_config(_flow_config(opts))
    flow.check()  # e.g. RAFT weights present: fail now, not after decoding
    res = warp_error_of_files(stylized, source, flow=flow)
    if csv_path:
        res.to_csv(csv_path)
    if plot_path:
        res.plot_png(plot_path)
    click.echo(f"warping error {res.mean:.6f} over {len(res.per_frame)} frame pairs")


@eval_group.command(name="flow", cls=_Command)
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--methods", default="dis:ultrafast,dis:fast,dis:medium,deepflow",
              cls=_Option, group="Common", example="--methods dis:fast,raft:small",
              help="Comma list of flow backends to score, each NAME or NAME:PRESET (see "
                   "`vidstyle run --help`, --flow and --flow-preset) [default: "
                   "dis:ultrafast,dis:fast,dis:medium,deepflow].")
def eval_flow_cmd(root: Path, methods: str) -> None:
    """Average endpoint error of each flow backend on an MPI-Sintel or FlyingChairs folder.

    \b
    Examples:
      vidstyle eval flow ../shared/data/flow/sintel/training
      vidstyle eval flow ../shared/data/flow/flyingchairs --methods dis:medium,deepflow
    """
    from vidstyle.evaluate import evaluate_flow_dir

    if not root.is_dir():
        raise InputError(f"not a folder: {root}")
    rows = evaluate_flow_dir(root, [m.strip() for m in methods.split(",") if m.strip()])
    click.echo(f"{'method':<16} {'dataset':<12} {'sequence':<12} {'pass':<6} "
               f"{'EPE all':>8} {'EPE noc':>8} {'ms/pair':>8}")
    for r in rows:
        click.echo(f"{r['method']:<16} {r['dataset']:<12} {r['sequence']:<12} "
                   f"{str(r['pass']):<6} {r['epe_all']:>8.3f} {r['epe_noc']:>8.3f} "
                   f"{r['ms_per_pair']:>8.1f}")


@eval_group.command(name="cuts", cls=_Command)
@click.argument("clip", type=click.Path(path_type=Path))
@click.option("--size", default=384, show_default=True, type=click.IntRange(min=16),
              cls=_Option, group="Common", example="--size 160",
              help="Longest side (px) the frames are compared at.")
@click.option("--step", default=1, show_default=True, type=click.IntRange(min=1),
              cls=_Option, group="Common", example="--step 3",
              help="Use every STEP-th frame (3: three times the motion).")
@click.option("--all", "show_all", is_flag=True, cls=_Option, group="Output",
              example="--all", help="Print the scores of every frame pair, not only cuts.")
@_flow_options
def eval_cuts_cmd(clip: Path, size: int, step: int, show_all: bool, **opts: Any) -> None:
    """Shot cuts of CLIP with their scores.

    A cut breaks the flow (consistent: fraction of flow-consistent pixels, below 0.5) and
    changes the picture's appearance (appearance: colour, edge and brightness statistics,
    0.62 or more); fast motion breaks only the flow. The flow options are `vidstyle run`'s.

    \b
    Examples:
      vidstyle eval cuts clip.mp4
      vidstyle eval cuts clip.mp4 --step 3 --all
    """
    from vidstyle import media
    from vidstyle.evaluate import cuts_of_file
    from vidstyle.flow import flow_from_config

    flow = flow_from_config(_flow_config(opts))
    flow.check()
    info = media.probe(clip)
    fps = float(info.fps) if info.fps else None

    def line(t: int, score: Any) -> str:
        when = f" ({t / fps:.2f} s)" if fps else ""
        kind = "cut" if score.cut else "   "
        return (f"{kind} frame {t - step:>5} -> {t:>5}{when}: consistent "
                f"{score.consistent:.2f}, appearance {score.appearance:.2f}")

    def on_pair(t: int, score: Any) -> None:
        if show_all:
            click.echo(line(t, score))

    found = cuts_of_file(clip, flow=flow, size=size, step=step, on_pair=on_pair)
    if not show_all:
        for t, score in found:
            click.echo(line(t, score))
    starts = ", ".join(str(t) for t, _ in found) or "none"
    click.echo(f"{len(found)} cut(s) in {info.path.name} (new shots start at frames: {starts})")


def main() -> None:
    """Console-script entry point."""
    # The fast path runs torch in several threads at once (network, flow masks); spinning
    # OpenMP workers then steal the 2 cores from each other. Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        cli(prog_name="vidstyle")
    except KeyboardInterrupt:  # pragma: no cover - outside click's invoke
        sys.exit(130)


if __name__ == "__main__":
    main()
