"""Crash-safe file writing: write to a temporary name in the same folder, then rename."""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.core.errors import BenchError

TMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<random>.tmp" next to their target


def remove_stray_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete what a killed ``atomic_write`` left in ``folder`` (SIGKILL skips its cleanup).
    Only for a folder that no other process is writing into at the moment."""
    stray = sorted(Path(folder).glob(f".*{TMP_SUFFIX}"))
    for tmp in stray:
        tmp.unlink(missing_ok=True)
    return stray


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then atomically rename tmp_path to ``path``.

    A reader never sees a half-written file: either the old one or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_writable_folder(folder: str | os.PathLike, what: str = "--out") -> None:
    """Refuse, before any work, a folder that cannot be made, read or written into."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        where = "" if existing == folder else f": {existing} is a file"
        raise BenchError(f"{what} {folder} is not a folder{where}; give a folder path")
    if not os.access(existing, os.R_OK | os.W_OK | os.X_OK):
        raise BenchError(
            f"{what} {folder}: {existing} is not readable and writable; give a folder you can "
            "write to"
        )


def check_writable_file(path: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, a file path that is a folder or whose folder cannot be
    made or written into."""
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"{what} {path} is a folder; give a file path")
    existing = next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise BenchError(
            f"{what} {path}: cannot write into {existing}; give a path you can write to"
        )


def write_text(path: str | os.PathLike, text: str) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, _write)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
