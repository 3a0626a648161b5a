"""vidstyle.fileio: hashing, atomic writes, umask modes, and no temp file left on error."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from vidstyle import fileio
from vidstyle.errors import OutputError
from vidstyle.evaluate import WarpErrorResult
from vidstyle.fast.model_io import read_manifest, write_manifest_entry


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    p = tmp_path / "blob.bin"
    data = os.urandom(3 * 1000 + 17)
    p.write_bytes(data)
    assert fileio.sha256_file(p, chunk=1000) == hashlib.sha256(data).hexdigest()
    assert fileio.sha256_file(str(p)) == hashlib.sha256(data).hexdigest()


def test_atomic_write_replaces_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.txt"
    fileio.atomic_write_text(target, "first")
    fileio.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.txt"]


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_write_gets_the_umask_mode(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        fileio.atomic_write_bytes(tmp_path / "x.json", b"{}")
        with fileio.atomic_path(tmp_path / "y.bin", fsync=True) as tmp:
            tmp.write_bytes(b"y")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "x.json") == 0o666 & ~mask
    assert _mode(tmp_path / "y.bin") == 0o666 & ~mask


@pytest.mark.parametrize("error", [ValueError("bad data"), KeyboardInterrupt()])
def test_atomic_path_removes_the_temp_file_on_error(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    with pytest.raises(type(error)), fileio.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.png.") and tmp.suffix == ".png"
        tmp.write_bytes(b"half")
        raise error
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_manifest_rewrite_gets_the_umask_mode(tmp_path: Path) -> None:
    """It was chmod-ed to 0o644 whatever the umask."""
    mp = tmp_path / "manifest.toml"
    old = os.umask(0o077)
    try:
        write_manifest_entry("m", {"file": "m.pt", "sha256": "0" * 64}, manifest_path=mp)
    finally:
        os.umask(old)
    assert _mode(mp) == 0o600
    assert read_manifest(mp)["models"]["m"]["file"] == "m.pt"


def test_manifest_rewrite_leaves_no_temp_file_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest writer leaked its mkstemp file when the write or the rename failed."""
    mp = tmp_path / "manifest.toml"
    write_manifest_entry("a", {"file": "a.pt", "sha256": "1" * 64}, manifest_path=mp)
    before = mp.read_bytes()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        write_manifest_entry("b", {"file": "b.pt", "sha256": "2" * 64}, manifest_path=mp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.toml"]
    assert mp.read_bytes() == before


def _result() -> WarpErrorResult:
    return WarpErrorResult(per_frame=(0.5, 0.25), consistent=(0.9, 0.8), mean=0.375)


def test_report_files_get_the_umask_mode(tmp_path: Path, umask_022: int) -> None:
    """evaluate's CSV/PNG were left with mkstemp's 0o600."""
    _result().to_csv(tmp_path / "e.csv")
    _result().plot_png(tmp_path / "e.png")
    assert _mode(tmp_path / "e.csv") == umask_022
    assert _mode(tmp_path / "e.png") == umask_022
    assert (tmp_path / "e.csv").read_text().splitlines()[-1] == "mean,0.375,"


def test_report_write_interrupted_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_replace(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        _result().to_csv(tmp_path / "e.csv")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with pytest.raises(OutputError, match="does not exist"):
        _result().to_csv(tmp_path / "missing" / "e.csv")
