"""Atomic file output: a report is either the old file or the complete new one, never half.

Each write goes to a temporary file in the target directory and is moved into place with
``os.replace`` (atomic on POSIX), so an interrupted run leaves no corrupt file and results
already written stay on disk.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent directories."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _jsonable(obj):
    """Replace non-finite floats by strings so the JSON stays standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _jsonable(obj.item())
    return obj


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically (non-finite floats as strings)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def save_figure_atomic(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return write_bytes_atomic(path, buf.getvalue())


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True
