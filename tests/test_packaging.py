"""A wheel install (not editable) carries the shipped models and pipelines as package data.

The wheel is built from a copy of the package sources (pyproject.toml, README.md, vidstyle/)
in a temporary folder, so no build/ or *.egg-info is left in the checkout and no stale
build folder can add files the package data declaration would miss. It is installed with
``pip install --target`` (no dependencies, no index: the venv running the tests has them)
and run from another working directory with only that folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FAST_STYLES = ("starry", "scream", "wave", "composition_vii", "shipwreck", "udnie",
               "woman_with_hat")
#: package data that must be in the wheel, relative to the package folder
SHIPPED = ("data/weights/fast7.pt", "data/weights/fast7_strong.pt", "data/weights/fast7_s2d.pt",
           "data/weights/manifest.toml", "data/pipelines/fast.toml",
           "data/pipelines/optim.toml")
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Build the wheel and install it into a folder; returns (wheel file, install folder)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "vidstyle", src / "vidstyle",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist, site = root / "dist", root / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, cwd=root, timeout=TIMEOUT_S)
    (wheel,) = dist.glob("vidstyle-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(site), str(wheel)],
                   check=True, cwd=root, timeout=TIMEOUT_S)
    return wheel, site


def _vidstyle(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vidstyle ARGS`` (or ``python ARGS`` when the first is ``-c``) from
    ``cwd`` with only the installed wheel on the path and an empty, offline VIDSTYLE_HOME
    (so the optimization method, which needs the VGG weights, cannot run)."""
    env = dict(os.environ)
    env.update(PYTHONPATH=str(site), VIDSTYLE_HOME=str(cwd / "home"), VIDSTYLE_OFFLINE="1")
    cmd = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "vidstyle",
                                                           *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def test_wheel_contains_the_shipped_models_and_pipelines(installed: tuple[Path, Path]) -> None:
    wheel, site = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in SHIPPED:
        assert f"vidstyle/{rel}" in names, rel
        assert (site / "vidstyle" / rel).is_file(), rel
    # the resume checkpoints stay in the repository
    assert not any("checkpoint" in n for n in names)


def test_installed_wheel_finds_its_package_data(installed: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    _, site = installed
    code = ("import vidstyle\n"
            "from vidstyle.fast.model_io import DEFAULT_WEIGHTS_DIR\n"
            "from vidstyle.engine.spec import pipelines_dir\n"
            "print(vidstyle.__file__, DEFAULT_WEIGHTS_DIR, pipelines_dir(), sep='\\n')\n")
    res = _vidstyle(site, tmp_path, "-c", code)
    assert res.returncode == 0, res.stderr
    pkg = (site / "vidstyle").resolve()
    module, weights, pipelines = (Path(line).resolve() for line in res.stdout.splitlines())
    assert module == pkg / "__init__.py"  # the installed copy, not the checkout
    assert weights == pkg / "data" / "weights"
    assert pipelines == pkg / "data" / "pipelines"

    res = _vidstyle(site, tmp_path, "styles")
    assert res.returncode == 0, res.stderr
    methods = {line.split()[0]: line.split()[1] for line in res.stdout.splitlines()[1:]}
    assert {s: methods.get(s) for s in FAST_STYLES} == dict.fromkeys(FAST_STYLES, "optim,fast")


def test_installed_wheel_stylizes_with_the_fast_method(installed: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    _, site = installed
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    res = _vidstyle(site, tmp_path, "run", "in.png", "-o", "out.png", "--style", "starry",
                    "--size", "64", "--device", "cpu", "-q")
    assert res.returncode == 0, res.stderr
    assert "method fast" in res.stdout
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (64, 48)
