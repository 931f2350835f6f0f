"""Every failure of train.py / test.py ends in one line on stderr, a non-zero exit and no traceback, and
leaves nothing behind (issue #15, parts 3-5, 7).

Each failure runs the real command in a subprocess on a tiny config (1 epoch, 2 batches). Faults that
cannot be caused from the command line (a full disk, a kill during a save, Ctrl-C at a given moment) are
injected by a small wrapper that patches one function and then runs the script with ``runpy``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml

from sjframe.core.cli_errors import UserError
from sjframe.core.rundir import RunDir, file_mode
from sjframe.methods.surrogate.config import TEST_FLAGS, TRAIN_FLAGS
from tests.support.entry_points import load_entry_point, write_tiny_shd_config

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where there is no GPU")


_load = load_entry_point


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_shd_config(tmp_path_factory.mktemp("clierr"), plots=False)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> Path:
    """A finished 1-epoch run (trained in-process: the subprocesses below test the failures)."""
    runs = tmp_path_factory.mktemp("trained")
    assert _load("train").main([str(tiny), "--runs_root", str(runs)]) == 0
    (run,) = runs.iterdir()
    return run


def _copy_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def _cli(script: str, *args: str, wrapper: str | None = None, env: dict | None = None,
         timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``script`` (train.py / test.py) as a command; with ``wrapper``, that code runs first in the process."""
    cmd, full_env = _commands(script, *args, wrapper=wrapper, env=env)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


def _commands(script: str, *args: str, wrapper: str | None = None, env: dict | None = None) -> tuple[list, dict]:
    cmd = [sys.executable, str(ROOT / script), *args] if wrapper is None else \
        [sys.executable, "-c", wrapper + "\nimport runpy, sys\nsys.argv = sys.argv[1:]\n"
         "runpy.run_path(sys.argv[0], run_name='__main__')\n", str(ROOT / script), *args]
    full_env = {k: v for k, v in os.environ.items() if k != "SJFRAME_DEBUG"}
    full_env.update({"OMP_NUM_THREADS": "1", **(env or {})})
    return cmd, full_env


def _cli_many(jobs: dict[str, tuple], parallel: int = 3) -> dict[str, subprocess.CompletedProcess]:
    """Run several commands ``name -> (script, *args)`` at once (each start mostly imports torch); their results."""
    results: dict[str, subprocess.CompletedProcess] = {}
    pending = list(jobs.items())
    while pending:
        batch, pending = pending[:parallel], pending[parallel:]
        procs = {}
        for name, (script, *args) in batch:
            cmd, env = _commands(script, *args)
            procs[name] = (cmd, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                 text=True, env=env))
        for name, (cmd, proc) in procs.items():
            out, err = proc.communicate(timeout=300)
            results[name] = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    return results


def _one_error(done: subprocess.CompletedProcess, prog: str, *needles: str, status: int | None = None) -> str:
    """The one ``<prog>: error: ...`` line of a failed command (non-zero exit, no traceback), checked for ``needles``."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode != 0 if status is None else done.returncode == status, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith(f"{prog}: ")]
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _no_run_left(runs: Path) -> None:
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


@pytest.fixture(scope="module")
def setup_failures(tiny, trained, tmp_path_factory) -> dict:
    """The commands that fail before training, run together: ``name -> (completed process, paths)``."""
    tmp = tmp_path_factory.mktemp("setup_failures")
    paths: dict[str, Path] = {}
    for damage in ("truncated", "random"):
        run = _copy_run(trained, tmp / damage)
        last = run / "checkpoints" / "last.pt"
        last.write_bytes(last.read_bytes()[:3000] if damage == "truncated" else os.urandom(3000))
        paths[damage] = run
    cut = tmp / "cut.pt"
    cut.write_bytes((trained / "checkpoints" / "best.pt").read_bytes()[:2000])
    blocker = tmp / "a_file"
    blocker.write_text("not a folder")
    best = str(trained / "checkpoints" / "best.pt")
    runs = {name: tmp / f"runs_{name}" for name in ("cut", "arch", "cuda", "cupy", "lr")}
    jobs = {
        "truncated": ("train.py", "--resume", str(paths["truncated"])),
        "random": ("train.py", "--resume", str(paths["random"])),
        "cut": ("train.py", str(tiny), "--runs_root", str(runs["cut"]), "--load_pt_file", str(cut)),
        "arch": ("train.py", str(tiny), "--runs_root", str(runs["arch"]), "--hidden_size", "16", "--load_pt_file", best),
        "loose": ("test.py", str(cut)),
        "runs_root": ("train.py", str(tiny), "--runs_root", str(blocker / "runs")),
        "lr": ("train.py", str(tiny), "--runs_root", str(runs["lr"]), "--train.lr", "1e39"),
        "debug": ("train.py", str(tiny), "--runs_root", str(runs["lr"]), "--train.lr", "1e39", "--debug"),
    }
    if not torch.cuda.is_available():
        jobs["cuda"] = ("train.py", str(tiny), "--runs_root", str(runs["cuda"]), "--device", "cuda")
        jobs["cupy"] = ("train.py", str(tiny), "--runs_root", str(runs["cupy"]), "--model.backend", "cupy")
    return {"done": _cli_many(jobs), "runs": runs, "paths": {**paths, "cut": cut, "blocker": blocker}}


# ------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_resume_from_an_unreadable_last_pt(setup_failures, damage):
    run = setup_failures["paths"][damage]
    last = run / "checkpoints" / "last.pt"
    line = _one_error(setup_failures["done"][damage], "train.py", str(last), "could not be read",
                      "truncated or not a PyTorch checkpoint")
    assert line.startswith("train.py: error: checkpoint ")
    assert not (run / "config.effective.yaml").exists() and not (run / "resume_overrides.jsonl").exists()


def test_resume_after_a_partial_metrics_line_continues_from_the_last_record(trained, tmp_path):
    run = _copy_run(trained, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "train_lo')  # a write cut off by a crash
    done = _cli("train.py", "--resume", str(run), "--epochs", "2")
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("train.py: ")]
    assert len(notes) == 1 and str(run / "metrics.jsonl") in notes[0] and "partial line" in notes[0]
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


# ------------------------------------------------------------------------------------------ initial weights
def test_load_pt_file_truncated(setup_failures):
    _one_error(setup_failures["done"]["cut"], "train.py", str(setup_failures["paths"]["cut"]), "could not be read")
    _no_run_left(setup_failures["runs"]["cut"])


def test_load_pt_file_of_another_architecture_names_the_tensor_and_both_shapes(setup_failures):
    _one_error(setup_failures["done"]["arch"], "train.py", "--load_pt_file", "does not fit the model",
               "'fcs.0.weight'", "[12, 700]", "[16, 700]")
    _no_run_left(setup_failures["runs"]["arch"])  # the model is built after the run directory: removed again


def test_test_py_on_a_loose_truncated_checkpoint(setup_failures):
    loose = setup_failures["paths"]["cut"]
    _one_error(setup_failures["done"]["loose"], "test.py", str(loose), "could not be read")


# ------------------------------------------------------------------------------------------ set-up failures
@NO_CUDA
@pytest.mark.parametrize(("name", "needles"), [
    ("cuda", ["device 'cuda'", "CUDA is not available", "--device cpu"]),
    ("cupy", ["--model.backend cupy cannot run here", "CUDA is not available"]),
])
def test_gpu_options_without_a_gpu(setup_failures, name, needles):
    _one_error(setup_failures["done"][name], "train.py", *needles, status=2)
    _no_run_left(setup_failures["runs"][name])


def test_runs_root_that_cannot_be_created(setup_failures):
    _one_error(setup_failures["done"]["runs_root"], "train.py", "cannot create a run directory",
               str(setup_failures["paths"]["blocker"] / "runs"), status=2)


def test_overflowing_learning_rate(setup_failures):
    _one_error(setup_failures["done"]["lr"], "train.py", "train.lr 1e+39 overflows float32", status=2)
    _no_run_left(setup_failures["runs"]["lr"])


def test_debug_shows_the_traceback(setup_failures):
    debug = setup_failures["done"]["debug"]
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("train.py: error: config.train: train.lr 1e+39 overflows")


# ------------------------------------------------------------------------------------------ during training
def test_nan_inside_the_forward_pass(tiny, trained, tmp_path):
    weights = torch.load(trained / "checkpoints" / "best.pt", weights_only=False)["model"]
    weights["fcs.0.weight"][0, 0] = float("nan")  # the hidden layer's input current becomes NaN
    torch.save(weights, tmp_path / "nan.pt")
    runs = tmp_path / "runs"
    done = _cli("train.py", str(tiny), "--runs_root", str(runs), "--load_pt_file", str(tmp_path / "nan.pt"))
    _one_error(done, "train.py", "NaN / inf in the forward pass (fcs.0", "at epoch 1, batch 0",
               "No checkpoint was written yet", "non_finite_activation", status=1)
    (run,) = runs.iterdir()  # kept: it holds the logged event
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "non_finite_activation" and events[-1]["tensors"][0] == "fcs.0"


_FULL_DISK = """
import errno, os, torch
real = torch.save
calls = {"n": 0}
def save(obj, f, *args, **kwargs):
    if ".last.pt." in str(f):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2's last.pt: half written, then the disk is full
            with open(f, "wb") as fh:
                fh.write(b"PK-partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(obj, f, *args, **kwargs)
torch.save = save
"""


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tiny, tmp_path):
    runs = tmp_path / "runs"
    done = _cli("train.py", str(tiny), "--runs_root", str(runs), "--epochs", "2", wrapper=_FULL_DISK)
    (run,) = runs.iterdir()
    last = run / "checkpoints" / "last.pt"
    _one_error(done, "train.py", "no space left on device while writing", str(last), "previous last.pt is kept",
               status=1)
    assert torch.load(last, weights_only=False)["epoch"] == 1
    assert not list(run.rglob("*.tmp"))


_FULL_DISK_PNG = """
import errno, os
real = os.fsync
def fsync(fd):
    if ".png." in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(fd)
os.fsync = fsync
"""


def test_disk_full_while_writing_a_plot(trained, tmp_path):
    run = _copy_run(trained, tmp_path / "run")
    done = _cli("test.py", str(run), "--eval.plots", "true", wrapper=_FULL_DISK_PNG)
    _one_error(done, "test.py", "no space left on device while writing", str(run / "plots"), ".png", status=1)
    assert not list(run.rglob("*.tmp")) and not list(run.glob("plots/test-*/*.png"))


_CTRL_C_IN_TEST = """
import os, signal
# a terminal's Ctrl-C behaviour even when pytest runs as a background job (whose children inherit SIGINT ignored,
# and Python then raises no KeyboardInterrupt)
signal.signal(signal.SIGINT, signal.default_int_handler)
import sjframe.methods.surrogate.evaluation as evaluation
real = evaluation.evaluate_model
def evaluate_model(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the test set is evaluated
    return real(*args, **kwargs)
evaluation.evaluate_model = evaluate_model
"""


def test_ctrl_c_in_test_py(trained):
    done = _cli("test.py", str(trained), wrapper=_CTRL_C_IN_TEST)
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "test.py: interrupted"


def test_sigterm_in_train_py_saves_the_curves_and_exits_143(tiny, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "train.py"), str(tiny), "--runs_root", str(runs), "--epochs", "10000",
           "--train.max_batches", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen = []
    for line in proc.stderr:  # wait until an epoch is done
        seen.append(line)
        if line.startswith('{"epoch": 1,'):
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    (run,) = runs.iterdir()
    last = [line for line in stderr.splitlines() if line.startswith("train.py: ")]
    assert len(last) == 1 and last[0].startswith("train.py: terminated (SIGTERM); curves in ")
    assert f"--resume {run}" in last[0] and (run / "plots" / "training_curves.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------ nothing left behind
_KILL_IN_SAVE = """
import os, signal, torch
real = torch.save
calls = {"n": 0}
def save(obj, f, *args, **kwargs):
    if ".last.pt." in str(f):
        calls["n"] += 1
        if calls["n"] == 2:  # killed half-way through epoch 2's last.pt
            with open(f, "wb") as fh:
                fh.write(b"PK-partial")
            os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *args, **kwargs)
torch.save = save
"""


def test_kill_during_a_checkpoint_save_then_resume_leaves_no_tmp(tiny, tmp_path, capsys):
    runs = tmp_path / "runs"
    done = _cli("train.py", str(tiny), "--runs_root", str(runs), "--epochs", "2", wrapper=_KILL_IN_SAVE)
    assert done.returncode == -signal.SIGKILL
    (run,) = runs.iterdir()
    assert list((run / "checkpoints").glob(".last.pt.*.tmp"))  # the orphan of the killed save
    assert _load("train").main(["--resume", str(run)]) == 0
    assert not list(run.rglob("*.tmp"))
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 2


def test_two_resumes_of_one_run_cannot_both_write_it(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path / "run")
    holder = RunDir.open(run)
    holder.lock()  # as a training process does
    try:
        assert _load("train").main(["--resume", str(run), "--epochs", "2"]) == 2
        err = capsys.readouterr().err
        assert f"run directory {run} is in use by another process (pid {os.getpid()})" in err
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 1
    finally:
        holder.unlock()


def test_resume_overrides_are_recorded_beside_the_untouched_config(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path / "run")
    original = (run / "config.yaml").read_bytes()
    train = _load("train")
    assert train.main(["--resume", str(run), "--epochs", "2", "--train.lr", "2e-3"]) == 0
    assert train.main(["--resume", str(run), "--epochs", "3"]) == 0
    assert (run / "config.yaml").read_bytes() == original
    effective = yaml.safe_load((run / "config.effective.yaml").read_text())
    assert effective["train"]["epochs"] == 3 and effective["train"]["lr"] == 2e-3  # overrides accumulate
    records = [json.loads(line) for line in (run / "resume_overrides.jsonl").read_text().splitlines()]
    assert [(r["resume"], r["from_epoch"], r["overrides"]) for r in records] == [
        (1, 1, {"train.epochs": 2, "train.lr": 2e-3}), (2, 2, {"train.epochs": 3})]
    assert RunDir.open(run).read_config()["train"]["epochs"] == 3


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run = RunDir.create("mode", root=tmp_path)
        run.write_config({"a": 1})
        run.save_checkpoint({"x": 1}, "last.pt")
        run.log({"epoch": 1})
        for path in (run.config_path, run.checkpoints / "last.pt", run.metrics_path):
            assert path.stat().st_mode & 0o777 == 0o644 == file_mode(), path
    finally:
        os.umask(old)


def test_run_directories_created_in_the_same_second_are_distinct(tmp_path):
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(RunDir.create("race", tmp_path, stamp="s").path))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8


def test_partial_metrics_line_in_process(tmp_path):
    run = RunDir.create("log", root=tmp_path)
    run.log({"epoch": 1})
    with open(run.metrics_path, "a") as fh:
        fh.write('{"epoch": 2, "x')
    assert run.read_log() == [{"epoch": 1}]
    run.log({"epoch": 2})
    assert run.read_log() == [{"epoch": 1}, {"epoch": 2}]
    run.metrics_path.write_text('{"epoch": 1}\nbroken\n{"epoch": 3}\n')
    with pytest.raises(UserError, match=r"metrics.jsonl, line 2"):
        run.read_log()


def test_disk_full_in_the_atomic_writer_in_process(tmp_path, monkeypatch):
    from sjframe.core import rundir

    run = RunDir.create("full", root=tmp_path)
    run.save_checkpoint({"epoch": 1}, "last.pt")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir.torch, "save", full)
    with pytest.raises(rundir.DiskFullError, match="no space left on device while writing .*last.pt; the previous"):
        run.save_checkpoint({"epoch": 2}, "last.pt")
    monkeypatch.undo()
    assert run.load_checkpoint("last.pt")["epoch"] == 1 and not list(run.checkpoints.glob("*.tmp"))


# ------------------------------------------------------------------------------------------ --help
@pytest.mark.parametrize(("script", "flags", "special"), [
    ("train.py", TRAIN_FLAGS, ("--path_to_yaml", "--resume", "--resume_epoch", "--runs_root")),
    ("test.py", {k: v for k, v in TEST_FLAGS.items() if k != "--load_pt_file"},
     ("--path_to_yaml", "--load_pt_file", "--checkpoint", "--best_model")),
])
def test_help_lists_every_option(script, flags, special):
    done = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    missing = [f for f in [*flags, *special, "--debug", "--section.key"] if f not in done.stdout]
    assert not missing, missing
    assert "configs/default.yaml" in done.stdout and "README" in done.stdout
    assert set(_load(script.removesuffix(".py")).SPECIAL) <= set(special)
