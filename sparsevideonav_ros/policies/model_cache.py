"""The folder where small generated test models live (`checkpoint: tiny` of any policy).

Built once per version and machine, atomically: the model is written into a staging folder and
renamed into place, so parallel processes (tests, node processes) never read half a folder.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    """$SPARSEVIDEONAV_CACHE, else ~/.cache/sparsevideonav_ros."""
    return Path(os.environ.get("SPARSEVIDEONAV_CACHE", Path.home() / ".cache" / "sparsevideonav_ros"))


def cached_folder(name: str, marker: str, build: Callable[[Path], object]) -> Path:
    """<cache>/<name>, calling ``build(staging_folder)`` first when ``<name>/<marker>`` is missing."""
    root = cache_root()
    target = root / name
    if (target / marker).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    try:
        build(staging)
        staging.rename(target)
    except OSError:
        if not (target / marker).is_file():  # not a lost race: a real failure
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
