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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vidstyle import __version__
from vidstyle.config import RunConfig
from vidstyle.errors import Interrupted, VidstyleError

log = logging.getLogger("vidstyle")


class _Group(click.Group):
    """Turns library errors into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except VidstyleError as exc:
            if debug:
                raise
            click.echo(f"vidstyle: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("vidstyle: interrupted; finished work is kept, rerun to resume", err=True)
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


def _default_output(input_path: Path, style: str, method: str) -> Path:
    stem = Path(style).stem if ("/" in style or "." in style) else style.split(":")[0]
    stem = stem.replace(",", "+")
    return input_path.with_name(f"{input_path.stem}_{stem}_{method}{input_path.suffix}")


def _apply_overrides(cfg: RunConfig, **opts: object) -> RunConfig:
    """CLI options (those given, not None) override the pipeline's and defaults' values."""
    optim_fields = {f.name for f in dataclasses.fields(cfg.optim)}
    optim = {k: v for k, v in opts.items() if k in optim_fields and v is not None}
    top = {k: v for k, v in opts.items() if k in ("style", "method", "device", "max_frames")
           and v is not None}
    temporal_map = {"temporal": "mode", "passes": "passes", "temporal_weight": "temporal_weight",
                    "long_term": "long_term"}
    temporal = {temporal_map[k]: v for k, v in opts.items() if k in temporal_map and v is not None}
    flow = {k.removeprefix("flow_") if k != "flow" else "method": v for k, v in opts.items()
            if k in ("flow", "flow_scale", "flow_weights") and v is not None}
    fast_map = {"strength": "strength", "stability": "stability", "runtime": "runtime",
                "model": "model", "tile": "tile"}
    fast = {fast_map[k]: (str(v) if k == "model" else v) for k, v in opts.items()
            if k in fast_map and v is not None}
    if "size" in opts and opts["size"] is not None:
        fast["size"] = opts["size"]
    return dataclasses.replace(
        cfg,
        **top,
        fast=dataclasses.replace(cfg.fast, **fast),
        optim=dataclasses.replace(cfg.optim, **optim),
        temporal=dataclasses.replace(cfg.temporal, **temporal),
        flow=dataclasses.replace(cfg.flow, **{("weights_path" if k == "weights" else k): v
                                              for k, v in flow.items()}),
    )


def _int_list(_ctx, _param, value: str | None):  # noqa: ANN001, ANN202
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter("expected comma-separated integers, e.g. 1,10,20,40") from exc


_STYLIZE_OPTIONS = [
    click.option("--style", default=None, help="Style name (see `vidstyle styles`), image path, "
                 "or a mix such as starry:0.6,wave:0.4 (fast method)."),
    click.option("--method", type=click.Choice(["optim", "fast"]), default=None,
                 help="optim: Gatys optimization (slow, best); fast: feed-forward network."),
    click.option("--pipeline", type=click.Path(path_type=Path), default=None,
                 help="Pipeline definition (TOML) instead of the method's built-in one."),
    click.option("--size", type=int, default=None, help="Longest side of the output in pixels."),
    click.option("--iters", type=int, default=None, help="Optimizer iterations per frame."),
    click.option("--style-weight", type=float, default=None),
    click.option("--content-weight", type=float, default=None),
    click.option("--tv-weight", type=float, default=None),
    click.option("--style-scale", type=float, default=None,
                 help="Style image size relative to the output (stroke size)."),
    click.option("--init", type=click.Choice(["content", "style", "noise"]), default=None),
    click.option("--optimizer", type=click.Choice(["lbfgs", "adam"]), default=None),
    click.option("--preserve-color", is_flag=True, default=None,
                 help="Luminance-only transfer: keep the input's colours."),
    click.option("--multiscale", type=int, default=None,
                 help="Coarse-to-fine levels (0 = auto, 1 = single scale)."),
    click.option("--temporal", type=click.Choice(["none", "short", "long"]), default=None,
                 help="Temporal consistency for video (optim method)."),
    click.option("--passes", type=int, default=None, help="Multi-pass count (temporal long)."),
    click.option("--temporal-weight", type=float, default=None),
    click.option("--long-term", callback=_int_list, default=None,
                 help="Long-term frame offsets, e.g. 1,10,20,40."),
    click.option("--flow", type=click.Choice(["dis", "deepflow", "dualtvl1", "raft"]),
                 default=None),
    click.option("--flow-scale", type=float, default=None),
    click.option("--flow-weights", type=click.Path(path_type=Path), default=None),
    click.option("--strength", type=float, default=None, help="Fast method: style strength 0..1."),
    click.option("--stability", type=float, default=None,
                 help="Fast method: temporal stability 0..1 (default 0.7; 0 = off): how much of "
                      "the flow-warped previous frame's network features and output is kept."),
    click.option("--runtime",
                 type=click.Choice(["auto", "eager", "bf16", "fp16", "compile", "openvino"]),
                 default=None, help="Fast method: inference runtime (auto = fastest measured; "
                                    "fp16 is for CUDA)."),
    click.option("--model", type=click.Path(path_type=Path), default=None,
                 help="Fast method: a model file from `vidstyle train` (default: shipped)."),
    click.option("--tile", type=int, default=None,
                 help="Fast method: tile size in pixels for huge frames (0 = automatic)."),
    click.option("--max-frames", type=int, default=None, help="Stylize only the first N frames."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None),
    click.option("--seed", type=int, default=None, help="Random seed (runs are repeatable)."),
]


def _stylize_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The stylization options shared by ``run`` and ``batch``."""
    for option in reversed(_STYLIZE_OPTIONS):
        f = option(f)
    return f


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (default: INPUT_<style>_<method>.<ext> beside the input).")
@_stylize_options
@click.option("--work-dir", type=click.Path(path_type=Path), default=None,
              help="Work directory for resumable artifacts (default: beside the output).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def run(input_path: Path, output: Path | None, pipeline: Path | None, work_dir: Path | None,
        quiet: bool, **opts: object) -> None:
    """Stylize a video or a still image.

    \b
    Examples:
      vidstyle run clip.mp4 --style starry
      vidstyle run photo.jpg -o out.png --style scream --size 512 --iters 300
      vidstyle run clip.mp4 --method optim --temporal long --passes 3
    """
    from vidstyle.pipeline import run as run_pipeline

    cfg = _run_config(pipeline, opts)
    output = output or _default_output(input_path, cfg.style, cfg.method)
    with _Progress(quiet) as bar:
        result = run_pipeline(input_path, output, cfg, work_dir=work_dir, progress=bar)
    if result.work_dir is None:
        click.echo(f"wrote {result.output} ({result.frames} frame(s), method {cfg.method})")
    else:
        click.echo(f"wrote {result.output} ({result.frames} frame(s); {result.computed} "
                   f"computed, {result.reused} reused from {result.work_dir})")


def _run_config(pipeline: Path | None, opts: dict[str, object]) -> RunConfig:
    """The RunConfig of the stylization options (``_STYLIZE_OPTIONS``) and a pipeline file."""
    from vidstyle.pipeline import load_config

    if opts.get("flow_weights") is not None:
        opts["flow_weights"] = str(opts["flow_weights"])
    if opts.get("method") is None and pipeline is None:
        from vidstyle.stylize import default_method

        opts["method"] = default_method(str(opts.get("style") or RunConfig.style))
    cfg = load_config(RunConfig(), pipeline, opts.get("method"))  # type: ignore[arg-type]
    return _apply_overrides(cfg, **opts)


@cli.command()
@click.argument("in_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@_stylize_options
@click.option("--keep-work", is_flag=True,
              help="Keep each item's work directory (finished frames) after it is done.")
@click.option("--dry-run", is_flag=True,
              help="Only list each item as done or to do; stylize nothing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def batch(in_dir: Path, out_dir: Path, pipeline: Path | None, keep_work: bool, dry_run: bool,
          quiet: bool, **opts: object) -> None:
    """Stylize every video and image under IN_DIR into OUT_DIR (same relative paths).

    Resumable: run the same command again after a crash or kill and finished items are
    skipped (a receipt in OUT_DIR/.vidstyle-batch/ records each one's settings and
    output); an interrupted video continues from its finished frames (optim method).
    Changed settings, a changed input or a deleted output are redone. A bad input is
    reported and the others go on; the exit code is then 1.

    \b
    Examples:
      vidstyle batch clips/ styled/ --style starry
      vidstyle batch photos/ photos_wave/ --style wave --method optim --size 768
    """
    from vidstyle.batch import is_done, plan_batch, run_batch, settings_fingerprint

    cfg = _run_config(pipeline, opts)
    if dry_run:
        items, settings = plan_batch(in_dir, out_dir), settings_fingerprint(cfg)
        todo = 0
        for i, item in enumerate(items, 1):
            done = is_done(item, settings)
            todo += not done
            click.echo(f"[{i}/{len(items)}] {item.rel}: "
                       f"{'done' if done else 'to do -> ' + str(item.output)}")
        click.echo(f"{todo} to do, {len(items) - todo} done, of {len(items)} in {in_dir}")
        return

    with _Progress(quiet) as bar:

        def on_item(i: int, n: int, item, status: str) -> None:  # noqa: ANN001
            if status == "start":
                bar.reset()  # fresh bars (totals) for each item
                return
            shown = "already done, skipped" if status == "skip" else status
            click.echo(f"[{i}/{n}] {item.rel}: {shown}", err=status.startswith("failed"))

        res = run_batch(in_dir, out_dir, cfg, keep_work=keep_work, progress=bar,
                        on_item=on_item)
    click.echo(f"{len(res.done)} done, {len(res.skipped)} already done, "
               f"{len(res.failed)} failed, of {res.total} in {in_dir}")
    if res.failed:
        from vidstyle.errors import InputError

        raise InputError(f"{len(res.failed)} item(s) failed (listed above); fix or remove "
                         "them and run the same command again")


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


@cli.command()
def styles() -> None:
    """List named styles and which methods support them.

    \b
    Example:
      vidstyle styles
    """
    from vidstyle.styles import list_styles

    fast = _fast_styles()
    click.echo(f"{'name':<16} {'methods':<11} {'artist':<20} {'year':<8} source")
    for s in list_styles():
        methods = "optim,fast" if s.name in fast else "optim"
        click.echo(f"{s.name:<16} {methods:<11} {s.artist:<20} {s.year:<8} {s.source}")


def _fast_styles() -> set[str]:
    try:
        from vidstyle.fast.model_io import shipped_style_names
    except ImportError:
        return set()
    try:
        return set(shipped_style_names())
    except VidstyleError:
        return set()


@cli.command()
@click.option("--downloads", type=click.Path(path_type=Path), default=None,
              help="Folder that already holds the downloaded archives.")
def setup(downloads: Path | None) -> None:
    """Fetch and convert the offline VGG weights once into $VIDSTYLE_HOME.

    \b
    Example:
      vidstyle setup
    """
    from vidstyle.weights import fetch_offline_weights

    for r in fetch_offline_weights(downloads_dir=downloads):
        click.echo(f"{r.name}: {r.path} (sha256 {r.sha256[:12]}..., {r.source})")


@cli.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the demo clip (default: ./vidstyle_demo.mp4).")
@click.option("--style", default="starry", show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def demo(output: Path | None, style: str, quiet: bool) -> None:
    """Stylize the bundled Big Buck Bunny sample clip (with its audio).

    \b
    Example:
      vidstyle demo --style wave
    """
    from vidstyle.demo import demo_config, demo_input
    from vidstyle.pipeline import run as run_pipeline

    output = output or Path("vidstyle_demo.mp4")
    cfg = demo_config(style)
    with _Progress(quiet) as bar:
        result = run_pipeline(demo_input(), output, cfg, progress=bar)
    click.echo(f"demo written to {result.output.resolve()} ({result.frames} frames, "
               f"method {cfg.method}, style {style})")


@cli.command(context_settings={"ignore_unknown_options": False})
@click.option("--styles", default=None,
              help="Comma list of style names or name=image (default: the seven named).")
@click.option("--content-dir", "content_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Folder of training photos (repeatable).")
@click.option("--video", "videos", multiple=True, type=click.Path(path_type=Path),
              help="Video whose frames add to the training photos (repeatable).")
@click.option("--holdout-dir", "holdout_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Held-out photos for the sample sheet and evaluation losses.")
@click.option("--steps", type=int, default=None)
@click.option("--size", type=int, default=None, help="Training crop size in pixels.")
@click.option("--batch", type=int, default=None)
@click.option("--style-weight", type=float, default=None)
@click.option("--style-exponent", type=float, default=None,
              help="Strength exponent epsilon: lambda_s = style_weight * 10**epsilon.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for checkpoints, logs, curves and the model.")
@click.option("--resume", is_flag=True,
              help="Continue from the checkpoint in --out, with that run's settings (options "
                   "given again override them; --max-minutes is per invocation).")
@click.option("--add-style", default=None, help="NAME=IMAGE: add one style to --from MODEL.")
@click.option("--from", "from_model", type=click.Path(path_type=Path), default=None)
@click.option("--teacher", default=None,
              help="Distil this model (file or shipped name) into a new network, e.g. a "
                   "cheaper architecture via --set outer_kernel=5.")
@click.option("--max-minutes", type=float, default=None,
              help="Stop cleanly (checkpointed) after this many minutes.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Any other TrainConfig field, e.g. --set lr=5e-4.")
def train(pairs: tuple[str, ...], **opts: object) -> None:
    """Train the multi-style fast network (resumable), or add a style to one.

    \b
    Examples:
      vidstyle train --styles starry,scream,wave --content-dir photos/ --steps 10000 \\
          --size 256 --batch 8 --out runs/mine
      vidstyle train --out runs/mine --resume
      vidstyle train --add-style mine=painting.jpg --from vidstyle/data/weights/fast7.pt \\
          --content-dir photos/ --out runs/added
      vidstyle train --teacher fast7 --set outer_kernel=5 --set style_weight=0 \\
          --set content_weight=0 --content-dir photos/ --out runs/k5
    """
    from vidstyle.fast.train import TrainConfig, config_from_pairs, format_progress, saved_config
    from vidstyle.fast.train import train as run_train

    base = TrainConfig()
    if opts.get("resume"):
        # continue with the run's own settings (from --out, --set out_dir=... or the
        # default folder); options given again override them
        out_dir = opts.get("out_dir") or config_from_pairs(list(pairs), base).out_dir
        base = saved_config(str(out_dir)) or base
    cfg = config_from_pairs(list(pairs), base)
    changes: dict[str, object] = {}
    for key, value in opts.items():
        if value is None or value == () or value is False:
            continue
        if key == "styles":
            value = tuple(v.strip() for v in str(value).split(",") if v.strip())
        elif key in ("content_dirs", "videos", "holdout_dirs"):
            value = tuple(str(v) for v in value)  # type: ignore[union-attr]
        elif key in ("out_dir", "from_model"):
            value = str(value)
        changes[key] = value
    cfg = dataclasses.replace(cfg, **changes)

    def report(p) -> None:  # noqa: ANN001 - a TrainProgress, every log_every steps
        click.echo(format_progress(p))

    result = run_train(cfg, progress=report)
    click.echo(f"model {result.model_path} (sha256 {result.model_sha256[:12]}..., "
               f"{result.steps} steps{', stopped early' if result.stopped_early else ''})")


@cli.group(name="eval")
def eval_group() -> None:
    """Evaluation: temporal warping error, optical-flow accuracy.

    \b
    Examples:
      vidstyle eval warp-error stylized.mp4 --source clip.mp4 --csv err.csv --plot err.png
      vidstyle eval flow ../shared/data/flow/sintel/training
    """


@eval_group.command(name="warp-error")
@click.argument("stylized", type=click.Path(path_type=Path))
@click.option("--source", required=True, type=click.Path(path_type=Path),
              help="The original clip the stylized one was made from.")
@click.option("--flow", "flow_method", default="dis", show_default=True)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None)
def warp_error_cmd(stylized: Path, source: Path, flow_method: str, csv_path: Path | None,
                   plot_path: Path | None) -> None:
    """Temporal warping error (Lai et al. 2018) of STYLIZED against its --source.

    A clip made with --size or --max-frames is compared with the source resized to its
    size and cut to its length (a warning says so).

    \b
    Example:
      vidstyle eval warp-error out.mp4 --source clip.mp4 --plot err.png
    """
    from vidstyle.evaluate import warp_error_of_files
    from vidstyle.flow import make_flow

    res = warp_error_of_files(stylized, source, flow=make_flow(flow_method))
    if csv_path:
        res.to_csv(csv_path)
    if plot_path:
        res.plot_png(plot_path)
    click.echo(f"warping error {res.mean:.6f} over {len(res.per_frame)} frame pairs")


@eval_group.command(name="flow")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--methods", default="dis:ultrafast,dis:fast,dis:medium,deepflow",
              show_default=True)
def eval_flow_cmd(root: Path, methods: str) -> None:
    """Average endpoint error of each flow backend on an MPI-Sintel or FlyingChairs folder.

    \b
    Example:
      vidstyle eval flow ../shared/data/flow/sintel/training
    """
    from vidstyle.evaluate import evaluate_flow_dir

    if not root.is_dir():
        from vidstyle.errors import InputError

        raise InputError(f"not a folder: {root}")
    rows = evaluate_flow_dir(root, [m.strip() for m in methods.split(",") if m.strip()])
    click.echo(f"{'method':<16} {'dataset':<12} {'sequence':<12} {'pass':<6} "
               f"{'EPE all':>8} {'EPE noc':>8} {'ms/pair':>8}")
    for r in rows:
        click.echo(f"{r['method']:<16} {r['dataset']:<12} {r['sequence']:<12} "
                   f"{str(r['pass']):<6} {r['epe_all']:>8.3f} {r['epe_noc']:>8.3f} "
                   f"{r['ms_per_pair']:>8.1f}")


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
