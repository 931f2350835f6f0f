"""Run directories: ``runs/<config>-<timestamp>/`` with the resolved config, metrics, checkpoints.

Every method (surrogate-gradient FS/FR training, exact-time learning, STDP, ...) writes through
this one class so that runs look the same on disk:

* ``config.yaml``      the resolved config (defaults filled in)
* ``metrics.jsonl``    one JSON object per line (epoch records, test reports)
* ``checkpoints/``     ``last.pt``, ``best.pt`` (written atomically: temp file + ``os.replace``)
* ``plots/``           figures
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = ["RunDir", "atomic_write_bytes", "save_checkpoint_atomic"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash never leaves a partial file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


class RunDir:
    """A run directory. Create with :meth:`create` (new run) or :meth:`open` (existing run)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, config_name: str, root: str | Path = "runs", stamp: str | None = None) -> RunDir:
        stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
        base = Path(root) / f"{config_name}-{stamp}"
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        (path / "checkpoints").mkdir(parents=True)
        (path / "plots").mkdir()
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"{path} is not a run directory (no config.yaml in it)")
        return cls(path)

    # ------------------------------------------------------------------ files
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots(self) -> Path:
        (self.path / "plots").mkdir(exist_ok=True)
        return self.path / "plots"

    def write_config(self, resolved: dict[str, Any]) -> None:
        atomic_write_bytes(self.config_path, yaml.safe_dump(resolved, sort_keys=False).encode())

    def read_config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_path.read_text())

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl``."""
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(_jsonable(record)) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def save_checkpoint(self, obj: Any, name: str) -> Path:
        path = self.checkpoints / name
        save_checkpoint_atomic(obj, path)
        return path

    def load_checkpoint(self, name: str, map_location: str | torch.device = "cpu") -> Any:
        path = self.checkpoints / name
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc:  # corrupt / truncated file
            raise RuntimeError(f"checkpoint {path} could not be read ({exc})") from exc
