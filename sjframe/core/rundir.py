"""Run directories: ``runs/<config>-<timestamp>/`` with the resolved config, metrics, checkpoints.

Every method (surrogate-gradient FS/FR training, exact-time learning, STDP, ...) writes through
this one class so that runs look the same on disk:

* ``config.yaml``           the resolved config of the run's first start (defaults filled in); never rewritten
* ``config.effective.yaml`` after a ``--resume`` with overrides: the config in effect now
* ``resume_overrides.jsonl`` one record per resume: the overrides given and the epoch they took effect after
* ``metrics.jsonl``         one JSON object per line (epoch records, test reports)
* ``checkpoints/``          ``last.pt``, ``best.pt`` (written atomically: temp file + ``os.replace``)
* ``plots/``                figures
* ``.lock``                 held (``flock``) by the process training into the run; a second one is refused

Files follow the user's umask (``0o666 & ~umask``). A full disk (``ENOSPC``) while writing raises
:class:`~sjframe.core.cli_errors.DiskFullError` naming the file; the previous version stays as it was.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from sjframe.core.cli_errors import CheckpointError, DiskFullError, UserError, one_line

__all__ = ["RunDir", "atomic_write_bytes", "file_mode", "read_checkpoint", "save_checkpoint_atomic"]


def file_mode() -> int:
    """The mode a new file gets under the process's umask: ``0o666 & ~umask``."""
    try:  # Linux >= 4.7 shows the umask without changing it
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _disk_full(path: Path) -> DiskFullError:
    kept = f"; the previous {path.name} is kept" if path.exists() else ""
    return DiskFullError(f"no space left on device while writing {path}{kept}")


def _atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` into a temp file beside ``path``, then rename it over ``path`` (never a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _disk_full(path) from exc
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash never leaves a partial file behind."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    _atomic(Path(path), write)


def save_checkpoint_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, then rename over ``path``."""
    _atomic(Path(path), lambda tmp: torch.save(obj, tmp))


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of a checkpoint file; a missing or unreadable (truncated, random bytes) file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupt / truncated file: zip, pickle or storage errors
        raise CheckpointError(f"checkpoint {path} could not be read: it is truncated or not a PyTorch checkpoint "
                              f"({one_line(exc)})") from exc


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
        self._lock_fd: int | None = None

    @classmethod
    def create(cls, config_name: str, root: str | Path = "runs", stamp: str | None = None) -> RunDir:
        """A new, empty run directory ``<root>/<config_name>-<stamp>[-k]`` (never shared: ``mkdir`` claims the name)."""
        stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        k = 1
        while True:
            path = root / (f"{config_name}-{stamp}" if k == 1 else f"{config_name}-{stamp}-{k}")
            try:
                path.mkdir()  # atomic: of two processes starting in the same second, one gets -2
                break
            except FileExistsError:
                k += 1
        (path / "checkpoints").mkdir()
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

    @property
    def effective_config_path(self) -> Path:
        return self.path / "config.effective.yaml"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    def write_config(self, resolved: dict[str, Any]) -> None:
        """``config.yaml`` at the first start; later (a resume) ``config.effective.yaml``, leaving the original as it was."""
        path = self.effective_config_path if self.config_path.exists() else self.config_path
        atomic_write_bytes(path, yaml.safe_dump(resolved, sort_keys=False).encode())

    def read_config(self) -> dict[str, Any]:
        """The config in effect: ``config.effective.yaml`` after a resume with overrides, else ``config.yaml``."""
        path = self.effective_config_path if self.effective_config_path.is_file() else self.config_path
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"{path} is not valid YAML ({one_line(exc)})", status=2) from exc
        if not isinstance(data, dict):
            raise UserError(f"{path} holds no config mapping", status=2)
        return data

    def record_resume(self, overrides: dict[str, Any], checkpoint: str, epoch: Any, argv: list[str]) -> int:
        """Append a record of this resume to ``resume_overrides.jsonl``; returns its number (1, 2, ...)."""
        path = self.path / "resume_overrides.jsonl"
        n = 1 + (len([line for line in path.read_text().splitlines() if line.strip()]) if path.is_file() else 0)
        record = {"resume": n, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "checkpoint": checkpoint,
                  "from_epoch": epoch, "overrides": overrides, "argv": argv}
        _append_line(path, json.dumps(_jsonable(record)))
        return n

    # ------------------------------------------------------------------ lock and leftovers
    def lock(self) -> None:
        """Claim the run for this process (``flock`` on ``.lock``, not blocking) and remove orphaned temp files.

        A second process locking the same run gets a :class:`~sjframe.core.cli_errors.UserError` (exit status 2).
        The lock is released when the process ends (or by :meth:`unlock`).
        """
        if self._lock_fd is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise UserError(f"run directory {self.path} is in use by another process{who}; wait for it to finish "
                            f"(lock: {self.lock_path})", status=2) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self.remove_orphans()

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove_orphans(self) -> list[Path]:
        """Delete the temp files of writes killed half-way (``.<name>.*.tmp`` in the run folder and ``checkpoints/``)."""
        removed = []
        for folder in (self.path, self.checkpoints):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
        return removed

    def is_empty(self) -> bool:
        """Whether nothing was written yet but the config (no metrics, checkpoints, plots or reports)."""
        if (self.metrics_path.exists() or any(self.checkpoints.glob("*.pt")) or
                any(p for p in (self.path / "plots").glob("*")) or (self.path / "reports").exists()):
            return False
        extra = {p.name for p in self.path.iterdir()} - {"config.yaml", "checkpoints", "plots", ".lock"}
        return not {name for name in extra if not name.endswith(".tmp")}

    def remove_if_empty(self) -> bool:
        """Delete the run directory when :meth:`is_empty` (a failed start leaves nothing behind); True if removed."""
        if not self.path.is_dir() or not self.is_empty():
            return False
        self.unlock()
        shutil.rmtree(self.path, ignore_errors=True)
        return True

    # ------------------------------------------------------------------ metrics
    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (a partial last line of a killed write is dropped first)."""
        self.repair_log()
        _append_line(self.metrics_path, json.dumps(_jsonable(record)))

    def repair_log(self) -> bool:
        """Drop a partial last line of ``metrics.jsonl`` (a write cut off by a crash); True if one was dropped."""
        path = self.metrics_path
        if not path.is_file() or path.stat().st_size == 0:
            return False
        data = path.read_bytes()
        last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            json.loads(last)
            if not data.endswith(b"\n"):  # a whole record without its newline
                _append_line(path, "")
            return False
        except ValueError:
            pass
        keep = data.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n" if b"\n" in data.rstrip(b"\n") else b""
        atomic_write_bytes(path, keep)
        return True

    def read_log(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``; a partial last line is skipped, a broken earlier line is an error."""
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text().splitlines()
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                if i == len(lines) - 1:
                    break  # a write cut off by a crash: the last complete record is the one before
                raise UserError(f"{self.metrics_path}, line {i + 1}: not a JSON record ({one_line(exc)})") from exc
        return records

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, obj: Any, name: str) -> Path:
        path = self.checkpoints / name
        save_checkpoint_atomic(obj, path)
        return path

    def load_checkpoint(self, name: str, map_location: str | torch.device = "cpu") -> Any:
        return read_checkpoint(self.checkpoints / name, map_location)

    def find_checkpoint(self, spec: str | Path) -> Path:
        """The checkpoint file ``spec`` names: ``best`` | ``last`` | ``epoch_K`` | ``<name>.pt`` in ``checkpoints/``,
        or the path of a checkpoint file; one that does not exist is a ``FileNotFoundError`` listing the run's."""
        path = Path(spec)
        name = path.name if path.suffix == ".pt" else f"{path.name}.pt"
        in_run = self.checkpoints / name
        if path.parent == Path(".") and in_run.is_file():
            return in_run
        if path.suffix == ".pt" and path.is_file():
            return path
        if path.parent != Path("."):
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        have = sorted(p.name for p in self.checkpoints.glob("*.pt")) if self.checkpoints.is_dir() else []
        raise FileNotFoundError(f"checkpoint {in_run} does not exist (the run has {have or 'no checkpoints'})")

    def read_checkpoint(self, spec: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path]:
        """``(state, path)`` of the checkpoint ``spec`` (:meth:`find_checkpoint`); it must hold a ``model`` state."""
        path = self.find_checkpoint(spec)
        state = read_checkpoint(path, map_location)
        if not isinstance(state, dict) or "model" not in state:
            raise CheckpointError(f"checkpoint {path} holds no model state")
        return state, path

    # ------------------------------------------------------------------ reports
    def write_report(self, name: str, report: dict[str, Any], table: str, table_suffix: str = ".md",
                     log: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``reports/<name>.json`` and the readable ``reports/<name><table_suffix>`` atomically, and log
        ``log`` (default: ``{"event": "test", **report}``) to ``metrics.jsonl``; returns the report with ``table``."""
        folder = self.path / "reports"
        atomic_write_bytes(folder / f"{name}.json", (json.dumps(report, indent=2, default=float) + "\n").encode())
        atomic_write_bytes(folder / f"{name}{table_suffix}", (table.rstrip("\n") + "\n").encode())
        self.log({"event": "test", **report} if log is None else log)
        return {**report, "table": table}


def _append_line(path: Path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created with the umask's mode); a full disk names the file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode())
        with os.fdopen(fd, "a") as fh:
            fh.write(line + "\n")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"no space left on device while writing {path}") from exc
        raise
