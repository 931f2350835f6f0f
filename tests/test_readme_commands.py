"""The README's commands work (issue #15, part 6).

Every line of the README's ```bash blocks is a command (``a && b`` is two). Each must match a prefix in
:data:`RUN` (run here, on CPU, in seconds: a tiny config, or the default config for 1 epoch of 1 batch)
or in :data:`SKIP` (with the reason); the longest matching prefix decides. A new README command in
neither list fails the test, so that the README's commands stay tested.

``bash run_test.sh ...`` is run literally (it also runs scripts/setup_env.sh, which returns at once when
.venv is up to date); ``.venv/bin/python train.py / test.py`` commands call the scripts' ``main`` with
the same arguments (the interpreter start and torch import would cost seconds per command).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from sjframe.data.writers import random_dataset_files
from tests.support.entry_points import load_entry_point

ROOT = Path(__file__).resolve().parents[1]

#: command prefix -> why it is not run here
SKIP = {
    "bash run.sh": "trains the default config for 120 epochs (~5 min); tests/test_cli.py trains it for one batch",
    "bash run.sh configs/shd_adlif.yaml": "needs the SHD files in datasets/ (not shipped)",
    "bash scripts/run_tests.sh": "the whole test suite",
    ".venv/bin/python train.py configs/shd_": "needs the SHD files in datasets/ (not shipped)",
    ".venv/bin/python train.py configs/s3gd_": "needs SHD / Fashion-MNIST files in datasets/ (not shipped)",
    ".venv/bin/python benchmarks/": "benchmark: minutes, GPU kernels",
    "nice -n 10 .venv/bin/python benchmarks/": "benchmark: minutes",
    ".venv/bin/python train.py configs/exact_yinyang.yaml": "exact_time training, minutes; tests/test_exact_method.py",
    ".venv/bin/python train.py --resume <run_dir> --resume_epoch": "needs an exact_time run with savepoints; "
                                                                   "tests/test_exact_method.py",
    ".venv/bin/python test.py <run_dir> [--checkpoint best|last|epoch_K]": "exact_time savepoints; "
                                                                          "tests/test_exact_method.py",
    ".venv/bin/python train.py configs/stdp_digits.yaml": "STDP training, minutes; tests/test_stdp.py",
    ".venv/bin/python train.py configs/default.yaml --seeds": "5 default runs, ~25 min; tests/test_multiseed.py "
                                                              "runs 3 seeds of 2 epochs of 2 batches",
    ".venv/bin/python test.py <aggregate_dir>": "needs a multi-seed aggregate; tests/test_multiseed.py",
    "nice -n 10 .venv/bin/python datasets/generate_spoken_digits.py": "2,000 words, ~8 min, needs the speech extras; "
                                                                      "tests/test_speech_fast.py generates a few words",
    "nice -n 5 .venv/bin/python train.py configs/spoken_digits_": "3 seeds on the full spoken-digit set (~30 min; the "
                                                                  "files are not shipped); tests/test_multiseed.py",
    "nice -n 10 .venv/bin/python scripts/cross_validate.py": "8 spoken-digit trainings, ~12 min; "
                                                            "tests/test_cross_validation.py runs it at a tiny size",
    ".venv/bin/python scripts/compare_conditions.py": "rewrites a committed results/compare_* folder; "
                                                       "tests/test_compare_conditions.py runs the command recorded "
                                                       "there and checks it gives the committed table",
    "nice -n 10 .venv/bin/python train.py configs/baseline_": "5 seeds of a non-spiking baseline, minutes; "
                                                               "tests/test_baselines.py runs train.py, test.py and "
                                                               "--seeds with a baseline on the tiny SHD file",
}
#: command prefix -> what it runs on
RUN = {
    "bash run_test.sh <run_dir>": "literally, on a 1-epoch (1 batch) run of configs/default.yaml (Yin-Yang)",
    ".venv/bin/python train.py <config.yaml>": "a tiny SHD-layout config (random events, 1 epoch)",
    ".venv/bin/python train.py --resume <run_dir>": "the tiny run",
    ".venv/bin/python test.py <run_dir": "the tiny run",
}


def readme_commands() -> list[str]:
    """The commands of the README's ```bash blocks (comments dropped, ``&&`` split)."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\\\n\s*", "", block)  # a line continued with a backslash is one command
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.extend(part.strip() for part in line.split("&&"))
    return out


def decide(command: str) -> tuple[str, str] | None:
    """``("run" | "skip", prefix)`` of the longest prefix matching ``command``; None when none does."""
    matches = [(len(p), kind, p) for kind, table in (("run", RUN), ("skip", SKIP)) for p in table
               if command.startswith(p)]
    if not matches:
        return None
    _, kind, prefix = max(matches)
    return kind, prefix


def test_every_readme_command_is_listed():
    commands = readme_commands()
    assert any(c.startswith("bash run_test.sh") for c in commands)
    unlisted = [c for c in commands if decide(c) is None]
    assert not unlisted, f"README commands in neither RUN nor SKIP of {__file__}: {unlisted}"


_load = load_entry_point


def _argv(command: str, run_dir: Path, config: Path) -> list[str]:
    """The command's arguments with its placeholders filled in and ``[optional]`` parts dropped."""
    command = re.sub(r"\[[^\]]*\]", "", command)
    command = command.replace("<run_dir | checkpoint.pt>", str(run_dir)).replace("<run_dir>", str(run_dir))
    command = command.replace("<config.yaml>", str(config))
    return shlex.split(command)


def test_readme_commands_run(tmp_path, capsys):
    data = random_dataset_files("shd", tmp_path / "data", n_train=12, n_test=6, events=200, seed=3)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "threads": 1, "runs_root": str(tmp_path / "runs"),
        "data": {"name": "shd", "root": str(data), "T": 8, "T_empty": 2, "dt": 50, "val_fraction": 0.25},
        "model": {"name": "fcnet", "hidden_sizes": [8]},
        "train": {"epochs": 1, "batch_size": 4, "test_batch_size": 6, "max_batches": 1, "progress": False},
        "loss": {"D": 4, "A": 50}, "eval": {"raster_samples": 1, "plots": False},
    }))
    train, test = _load("train"), _load("test")
    # the default experiment, 1 epoch of 1 batch, for run_test.sh
    assert train.main(["configs/default.yaml", "--epochs", "1", "--train.max_batches", "1", "--train.progress",
                       "false", "--runs_root", str(tmp_path / "default")]) == 0
    (default_run,) = (tmp_path / "default").iterdir()
    tiny_run = None
    ran = []
    for command in readme_commands():
        kind, prefix = decide(command)
        if kind != "run":
            continue
        if command.startswith("bash run_test.sh"):
            argv = _argv(command, default_run, config)
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert done.returncode == 0, (command, done.stderr)
            assert "FS accuracy" in done.stdout
            assert (default_run / "reports" / "test-best-T100-E0.json").is_file()
        else:
            argv = _argv(command, tiny_run or tmp_path / "missing", config)
            script, args = argv[1], argv[2:]
            assert argv[0] == ".venv/bin/python" and script in ("train.py", "test.py"), command
            status = (train if script == "train.py" else test).main(args)
            out = capsys.readouterr()
            assert status == 0, (command, out.err)
            if script == "train.py" and tiny_run is None:
                tiny_run = Path(out.out.strip().splitlines()[-1].removeprefix("run_dir: "))
        ran.append(prefix)
    assert set(ran) == set(RUN), set(RUN) - set(ran)


@pytest.mark.parametrize("prefix", sorted(SKIP))
def test_skipped_commands_still_exist(prefix):
    """A SKIP entry whose command left the README is stale: remove it."""
    assert any(decide(c) == ("skip", prefix) for c in readme_commands()), prefix
