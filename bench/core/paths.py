"""Where data and caches live.

Data root: ``--data-root`` flag, else ``$DOGBENCH_DATA``, else ``<cache>/data``.
Cache (decoded image tensors, FID statistics): ``$DOGBENCH_CACHE``, else
``$XDG_CACHE_HOME/dogbench``, else ``~/.cache/dogbench``. The cache is kept apart
from the data root because the data root may be read-only (a shared copy).
"""

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("DOGBENCH_CACHE"):
        path = Path(os.environ["DOGBENCH_CACHE"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        path = Path(base) / "dogbench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(flag_value: str | None = None) -> Path:
    if flag_value:
        return Path(flag_value).expanduser()
    if os.environ.get("DOGBENCH_DATA"):
        return Path(os.environ["DOGBENCH_DATA"]).expanduser()
    return cache_dir() / "data"
