"""Multi-seed experiments: ``train.py <config> --seeds 0 1 2 [--jobs K]`` (issue #16, part 2).

One run per seed, each a child process that runs ``train.py``'s ``main`` with ``--seed s`` and then
``test.py``'s ``main`` on the new run directory (the same code as ``test.py <run_dir>``: the best-validation
checkpoint, or the method's / protocol's default). The children are forked from a ``multiprocessing``
forkserver that imported torch and the method once (a fresh process per seed without paying the imports
each time; the same results as the per-seed commands run one by one). In sequence by default; ``--jobs K``
runs K at once with ``--threads max(1, cores // K)`` each unless the config or command line sets the threads
(``OMP_NUM_THREADS`` too) and refuses ``K * threads > cores``.
The seed and threads keys are found in the method's config class (``seed`` / ``threads`` for the surrogate
method, e.g. ``stdp.seed`` for STDP), so every method takes ``--seeds``.

The aggregate directory ``<runs_root>/<name>-seeds-<stamp>/`` holds ``aggregate.json`` (per-seed values of
every numeric scalar of each test report, and per metric n, mean, sample sd, 95 % t interval),
``aggregate.md``, ``aggregate.png``, ``commands.txt`` (per-seed commands, runnable as they are),
``environment.json`` and ``logs/seed-<s>.log``. It is rewritten after every seed: ``status`` is
``running``, then ``complete``, or ``incomplete`` when a seed failed or the command was stopped (the
aggregate then covers the finished seeds only; the failed seed, its exit status and log are named).
``test.py <aggregate dir>`` prints ``aggregate.md``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sjframe.core.cli_errors import UserError
from sjframe.core.rundir import atomic_write_bytes
from sjframe.methods.aggregate import collect_scalars, write_aggregate

__all__ = ["run_seeds", "worker"]

ROOT = Path(__file__).resolve().parents[2]


def _find_key(method: Any, field: str) -> str | None:
    """Dotted config path of the ``seed`` / ``threads`` field of a method's settings (under its section, if any)."""
    import dataclasses
    import typing

    def walk(cls: Any, prefix: str) -> str | None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == field:
                return prefix + field
            if dataclasses.is_dataclass(hints[f.name]):
                found = walk(hints[f.name], f"{prefix}{f.name}.")
                if found:
                    return found
        return None

    return walk(method.settings, "" if method.section is None else f"{method.section}.")


def _split(argv: list[str]) -> tuple[list[int], int | None, list[str]]:
    """``(seeds, jobs, the other arguments)``; a bad ``--seeds`` / ``--jobs`` is a usage error."""
    seeds: list[str] | None = None
    jobs: list[str] | None = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        key, eq, inline = argv[i].partition("=")
        if key not in ("--seeds", "--jobs"):
            rest.append(argv[i])
            i += 1
            continue
        values = [inline] if eq else []
        i += 1
        while not eq and i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        if key == "--seeds":
            seeds = values
        else:
            jobs = values
    if not seeds or not all(v.lstrip("-").isdigit() for v in seeds):
        raise UserError(f"--seeds takes one or more integer seeds, got {seeds or 'none'}", status=2)
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds lists a seed twice: {seeds}", status=2)
    if jobs is not None and (len(jobs) != 1 or not jobs[0].isdigit() or int(jobs[0]) < 1):
        raise UserError(f"--jobs takes one number >= 1, got {jobs}", status=2)
    return [int(s) for s in seeds], None if jobs is None else int(jobs[0]), rest


def _plan(rest: list[str], special: tuple[str, ...]) -> dict[str, Any]:
    """Check the config and overrides once (before anything is written); what the per-seed runs need."""
    from sjframe.core.config import load_yaml, parse_cli
    from sjframe.methods import method_of

    try:
        args = parse_cli(rest, special=special)
        if "--resume" in args.special or "--resume_epoch" in args.special:
            raise UserError("--seeds starts new runs; it cannot be combined with --resume", status=2)
        paths = list(args.positional) + list(args.special.get("--path_to_yaml", []))
        if len(paths) != 1:
            raise UserError(f"give exactly one config file (got {paths or 'none'}); see --help", status=2)
        raw = load_yaml(paths[0])
        method = method_of(raw)
        name = method.name
        overrides = args.overrides(method.cli_options("train"))
        raw = method.apply_overrides(raw, overrides)
        method.parse(raw)
    except (ValueError, FileNotFoundError) as exc:
        from sjframe.core.cli_errors import one_line

        raise UserError(one_line(exc), status=2) from exc
    seed_key, threads_key = _find_key(method, "seed"), _find_key(method, "threads")
    if seed_key is None:
        raise UserError(f"method {name!r} has no seed in its config: --seeds cannot vary it", status=2)
    given = {path for path, _ in overrides}
    if seed_key in given or "seed" in given:
        raise UserError(f"--seeds sets {seed_key} for each run; drop --{seed_key} (or --seed)", status=2)
    node: Any = raw
    for part in (threads_key or "").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    roots = args.special.get("--runs_root") or [raw.get("runs_root", "runs")]
    return {"method": name, "name": raw.get("name") or Path(paths[0]).stem, "config": paths[0], "runs_root": roots[0],
            "seed_key": seed_key, "threads_key": threads_key, "threads_given": threads_key in given,
            "threads": node if isinstance(node, int) else None}


def _environment(threads: int | None, jobs: int, argv: list[str]) -> dict[str, Any]:
    """Machine, versions, threads, git commit and date of this multi-seed command."""
    import numpy
    import torch

    model = platform.processor()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def git(*cmd: str) -> str | None:
        try:
            done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"cpu_model": model, "cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads_per_run": threads, "jobs": jobs, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(), "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": None if status is None else bool(status), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": ["train.py", *argv]}


def run_seeds(argv: list[str], special: tuple[str, ...]) -> int:
    """``train.py ... --seeds s1 s2 ... [--jobs K]``: train and test one run per seed, write the aggregate."""
    seeds, jobs, rest = _split(argv)
    plan = _plan(rest, special)
    cores = os.cpu_count() or 1
    threads = plan["threads"]  # the config file's or the command line's value; None when neither sets it
    if jobs is not None:
        if jobs > cores:
            raise UserError(f"--jobs {jobs}: this machine has {cores} cores; at most {cores} runs at once", status=2)
        threads = threads or max(1, cores // min(jobs, len(seeds)))
        if min(jobs, len(seeds)) * threads > cores:
            raise UserError(f"--jobs {jobs} x {threads} threads = {jobs * threads} > {cores} cores: lower --jobs or "
                            f"--{plan['threads_key']}", status=2)
    jobs = min(jobs or 1, len(seeds))
    stamp, root, k = time.strftime("%Y%m%d-%H%M%S"), Path(plan["runs_root"]), 1
    root.mkdir(parents=True, exist_ok=True)
    while True:  # a new folder, never shared (mkdir claims the name)
        out = root / (f"{plan['name']}-seeds-{stamp}" + ("" if k == 1 else f"-{k}"))
        try:
            out.mkdir()
            break
        except FileExistsError:
            k += 1
    (out / "logs").mkdir()
    ctx = _context(plan["method"])
    # only a thread count computed here (cores // jobs) is passed on: one from the file or the command line is there
    extra = ["--" + plan["threads_key"], str(threads)] if threads and plan["threads_key"] and plan["threads"] is None \
        else []
    cmd = {s: [*rest, "--" + plan["seed_key"], str(s), *extra] for s in seeds}
    state: dict[str, Any] = {"dir": out, "plan": plan, "seeds": seeds, "argv": argv, "cmd": cmd, "threads": threads,
                             "runs": {}, "failed": None, "status": "running"}
    environment = _environment(threads or plan["threads"], jobs, argv)
    atomic_write_bytes(out / "environment.json", json.dumps(environment, indent=2).encode())
    write_aggregate(state, plot=False)
    print(f"multi-seed: {len(seeds)} runs ({plan['method']}), {jobs} at a time"
          f"{f', --threads {threads} each' if threads else ''}; aggregate: {out}", flush=True)
    pending, running, t_all, stopping = list(seeds), {}, time.monotonic(), False
    try:
        while running or (pending and state["failed"] is None):
            while pending and len(running) < jobs and state["failed"] is None:
                s = pending.pop(0)
                log = out / "logs" / f"seed-{s}.log"
                proc = ctx.Process(target=_child, args=(str(log), threads, cmd[s]), name=f"seed-{s}")
                proc.start()
                running[s] = (proc, time.monotonic())
                print(f"seed {s}: started ({seeds.index(s) + 1}/{len(seeds)}), log {log}", flush=True)
            for s, (proc, t0) in list(running.items()):
                if proc.exitcode is None:
                    continue
                del running[s]
                _finish(state, s, proc.exitcode, time.monotonic() - t0)
            if state["failed"] is not None and running and not stopping:
                stopping = True
                for proc, _ in running.values():
                    proc.terminate()  # SIGTERM: each saves its curves and prints its resume command in its log
            if running:
                time.sleep(0.2)
    except KeyboardInterrupt:
        for proc, _ in running.values():
            proc.terminate()
            proc.join()
        state["status"] = "incomplete"
        state["failed"] = state["failed"] or {"seed": None, "reason": "stopped (Ctrl-C / SIGTERM)"}
        write_aggregate(state)
        print(f"multi-seed: stopped; aggregate of the finished seeds (incomplete): {out}", file=sys.stderr)
        raise
    state["status"] = "complete" if state["failed"] is None else "incomplete"
    write_aggregate(state)
    if state["failed"] is not None:
        f = state["failed"]
        raise UserError(f"seed {f['seed']} failed (exit status {f['status']}; log {f['log']}); the aggregate of the "
                        f"{len(state['runs'])} finished seeds is marked incomplete: {out}", status=1)
    print(f"multi-seed: {len(seeds)} seeds done in {time.monotonic() - t_all:.1f} s")
    print(f"aggregate_dir: {out}")
    return 0


def _finish(state: dict[str, Any], seed: int, status: int, elapsed: float) -> None:
    """Record seed ``seed``'s result (or its failure) and rewrite the aggregate."""
    log = state["dir"] / "logs" / f"seed-{seed}.log"
    result_path = log.with_suffix(".json")
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if status != 0 or not result.get("report"):
        what = "FAILED" if state["failed"] is None else "stopped (another seed failed)"
        state["failed"] = state["failed"] or {"seed": seed, "status": status, "log": str(log),
                                              "run_dir": result.get("run_dir")}
        print(f"seed {seed}: {what} after {elapsed:.1f} s (exit status {status}); log {log}", flush=True)
        return
    report = json.loads(Path(result["report"]).read_text())
    state["runs"][seed] = {"run_dir": result["run_dir"], "report": result["report"], "log": str(log),
                           "elapsed_s": round(elapsed, 1), "metrics": collect_scalars(report)}
    try:  # a link to the run beside the aggregate (the paths are in aggregate.json as well)
        (state["dir"] / f"seed-{seed}").symlink_to(os.path.relpath(result["run_dir"], state["dir"]))
    except OSError:
        pass
    acc = state["runs"][seed]["metrics"].get("acc_fs")
    print(f"seed {seed}: done in {elapsed:.1f} s" + ("" if acc is None else f", test acc_fs {acc:.2f} %")
          + f"; run {result['run_dir']}", flush=True)
    write_aggregate(state, plot=False)


def _context(method: str) -> Any:
    """A forkserver context that imported torch, the engine, the plots and ``method`` before forking the runs."""
    import multiprocessing

    from sjframe.methods import METHODS

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["sjframe.methods.multiseed", "torch._dynamo", METHODS[method].partition(":")[0]])
    return ctx


def _child(log: str, threads: int | None, train_argv: list[str]) -> None:
    """Body of one seed's process: output to ``log``, then :func:`worker`; exits with its status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    status = worker([str(Path(log).with_suffix(".json")), *train_argv])
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(status)


def worker(argv: list[str]) -> int:
    """One seed's child process: ``train.py``'s main on ``argv[1:]``, then ``test.py``'s main on the new run;
    writes ``{run_dir, report}`` to ``argv[0]``; returns the first non-zero exit status (else 0)."""
    import importlib.util

    class Recorder:  # passes output through, keeping the last ``run_dir: <path>`` line
        def __init__(self, stream: Any) -> None:
            self.stream, self.run_dir = stream, None

        def write(self, text: str) -> int:
            for line in text.splitlines():
                if line.startswith("run_dir: "):
                    self.run_dir = line.removeprefix("run_dir: ").strip()
            return self.stream.write(text)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.stream, name)

    def load(name: str) -> Any:
        spec = importlib.util.spec_from_file_location(f"_sjframe_multiseed_{name}", ROOT / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    result_path, train_argv = Path(argv[0]), argv[1:]
    out, err = Recorder(sys.stdout), Recorder(sys.stderr)
    sys.stdout, sys.stderr = out, err
    status = load("train").main(train_argv)
    run_dir = out.run_dir or err.run_dir
    result: dict[str, Any] = {"run_dir": run_dir, "report": None}
    if status == 0 and run_dir:
        started = time.time() - 1.0
        print(f"\n$ test.py {run_dir}", flush=True)
        status = load("test").main([run_dir])
        if status == 0:  # the test report: a JSON written just now with the test metrics (not a confusion matrix)
            found = []
            for p in (Path(run_dir) / "reports").glob("*.json"):
                if p.stat().st_mtime >= started:
                    data = json.loads(p.read_text())
                    if isinstance(data, dict):
                        rank = 2 if isinstance(data.get("metrics"), dict) else int(data.get("event") == "test"
                                                                                   or "method" in data)
                        found.append((rank, p.stat().st_mtime, str(p)))
            result["report"] = max(found)[2] if found else None
    atomic_write_bytes(result_path, json.dumps(result).encode())
    return status
