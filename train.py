"""Train an experiment from a YAML config: ``python train.py <config.yaml> [--key value ...]``.

Dispatches on the config's top-level ``method`` (default ``surrogate``) to that method's ``Method``
object (:mod:`sjframe.methods.registry`); what it offers (``--resume``, ``--resume_epoch``, torchrun)
comes from its declared capabilities. The run goes to ``<runs_root>/<name>-<timestamp>/`` (``name``:
the config's ``name`` or the file's stem) and the last line printed is ``run_dir: <path>``.

Several processes / GPUs / nodes (methods that train distributed, e.g. surrogate):
``torchrun --nproc_per_node N train.py <config.yaml>``
(DistributedDataParallel; ``train.batch_size`` is the global batch; rank 0 creates the run directory and
writes every file; ``--resume`` works the same way). See README, "Training on several GPUs".

Options (every one train.py accepts):
  <config.yaml> | --path_to_yaml <config.yaml>   the experiment (seed 003's flag works too)
  --runs_root <dir>                               where the run directory goes (default: the config's runs_root, runs)
  --resume <run_dir>                              continue a run from its last checkpoint (exactly); overrides given
                                                  with it are recorded in <run_dir>/resume_overrides.jsonl and the
                                                  config in effect in config.effective.yaml (config.yaml stays as it was)
  --resume <run_dir> --resume_epoch K             continue from the savepoint of epoch K (methods that keep
                                                  savepoints, e.g. exact_time: checkpoints/epoch_K.pt)
  --protocol validated|paper                      train.protocol: validated (default: best.pt chosen on a validation
                                                  split) or paper (seed 003's: whole training file, no validation,
                                                  the last epoch tested; labelled in every report)
  --seeds s1 s2 ... [--jobs K]                    one run per seed, each tested (test.py's default checkpoint), and an
                                                  aggregate directory <runs_root>/<name>-seeds-<stamp>/ (mean, sd, 95 % t
                                                  interval of every test metric; commands; machine); --jobs K: K runs at
                                                  once with --threads cores // K each (see README "Multi-seed results")
  --section.key value [value ...]                 override any config value, e.g. --train.lr 3e-4, --device cpu,
                                                  --model.backend torch (top-level keys: --seed, --device, --threads, ...)
  seed 003's flags: --batch-size --test-batch-size --lr --epochs --loss_mode --T --T_empty --dt
    --hidden_size n [n ...] --FS a0 D A --FR a1 --neuron1 tm ts th --neuron2 tm ts th --treg lam b0
    --load_pt_file <ckpt> (initial weights) --log-interval n --seed n
  --debug                                         show the traceback of an error (also: SJFRAME_DEBUG=1)
  -h, --help                                      this text

Config keys: see README "Experiments: configs, train.py / test.py, run directories", configs/default.yaml and
sjframe/methods/surrogate/config.py (surrogate method); other methods: README. Any key as --section.key value.

Every failure ends in one line on stderr (train.py: error: ...) and an exit status: 2 a bad command line or
config, or the run directory is in use; 1 anything else (an unreadable checkpoint, a full disk, NaN / inf);
130 Ctrl-C; 143 SIGTERM (both save the curves and print the resume command). A failed start leaves no run
directory behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sjframe.core.distributed import DistContext
    from sjframe.core.rundir import RunDir
    from sjframe.methods.base import Method

USAGE = __doc__


SPECIAL = ("--path_to_yaml", "--resume", "--resume_epoch", "--runs_root")


def main(argv: list[str]) -> int:
    """Run train.py with ``argv``; every failure ends in one line on stderr and an exit status (see USAGE)."""
    from sjframe.core.cli_errors import run_cli

    return run_cli("train.py", _main, argv)


def _main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    if any(a.partition("=")[0] in ("--seeds", "--jobs") for a in argv):  # one run per seed: sjframe/methods/multiseed.py
        from sjframe.core.cli_errors import UserError
        from sjframe.methods.multiseed import run_seeds

        if not any(a.partition("=")[0] == "--seeds" for a in argv):
            raise UserError("--jobs runs several seeds at once: give --seeds s1 s2 ... too", status=2)
        return run_seeds(argv, SPECIAL)
    held: list[RunDir] = []  # run directories this call locked: released when it returns (in-process callers)
    try:
        return _start(argv, held)
    finally:
        for run in held:
            run.unlock()


def _start(argv: list[str], held: list[RunDir]) -> int:
    from sjframe.core import distributed
    from sjframe.core.cli_errors import UserError, one_line
    from sjframe.core.config import load_yaml, parse_cli
    from sjframe.core.rundir import RunDir
    from sjframe.core.runtime import select_device
    from sjframe.methods import method_of

    main_rank = distributed.env_world()[0] == 0
    try:
        args = parse_cli(argv, special=SPECIAL)
        resume_dir = args.special.get("--resume")
        resume_epoch = _resume_epoch(args.special.get("--resume_epoch"), resume_dir is not None)
        config_paths = list(args.positional) + list(args.special.get("--path_to_yaml", []))
        resume_from = None
        if resume_dir is not None:
            if len(resume_dir) != 1 or config_paths:
                raise UserError("--resume takes one run directory and no config file", status=2)
            run = RunDir.open(resume_dir[0])
            if main_rank:
                run.lock()  # a second process resuming this run stops here; orphaned *.tmp files go
                held.append(run)
            raw = run.read_config()  # the config in effect (config.effective.yaml after an earlier resume)
        else:
            if len(config_paths) != 1:
                raise UserError(f"give exactly one config file (got {config_paths or 'none'}); see --help", status=2)
            raw = load_yaml(config_paths[0])
            run = None
        method = method_of(raw)
        caps = method.capabilities
        if resume_dir is not None and not caps.supports_resume:
            raise UserError(f"method {method.name!r} cannot continue a run: --resume is not available", status=2)
        if resume_epoch is not None and not caps.keeps_savepoints:
            raise UserError(f"method {method.name!r} keeps no savepoints: --resume_epoch is not available "
                            "(--resume continues from the last checkpoint)", status=2)
        if run is not None:
            resume_from = _check_resume(run, resume_epoch)
        overrides = args.overrides(method.cli_options("train"))
        raw = method.apply_overrides(raw, overrides)
        settings = method.parse(raw)  # validate before a run directory is created
        world = distributed.env_world()[1]
        if world > 1 and not caps.supports_distributed:
            raise UserError(f"method {method.name!r} runs in one process; start it without torchrun "
                            "(it does not train distributed)", status=2)
        backend, device = method.dist_backend(settings), method.device_spec(settings)
        distributed.check_launch(backend, device)
        if world == 1:
            select_device(device, method.device_key())
        method.precheck(settings)  # e.g. kernel backends, initial weights (the data files are read when training starts)
        name = (raw.get("name") or Path(config_paths[0]).stem) if run is None else None
        roots = args.special.get("--runs_root") or [raw.get("runs_root", "runs")]
        if len(roots) != 1:
            raise UserError(f"--runs_root takes one folder, got {roots}", status=2)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(one_line(exc), status=2) from exc
    if run is not None and main_rank:
        if run.repair_log():
            print(f"train.py: note: {run.metrics_path} ended in a partial line (a write cut off); dropped it, "
                  "resuming from the last complete record", file=sys.stderr)
        run.record_resume({path: _get(raw, path) for path, _ in overrides}, *resume_from, argv)
    # under torchrun: every process runs from here on, in one process group; rank 0 creates the run
    # directory, writes every file and prints
    with distributed.launch(backend, device) as ctx:
        if run is None:
            run = distributed.create_run_dir(name, roots[0], ctx)  # locked by rank 0
            held.append(run)
        return _train(method, raw, run, resume_dir is not None, ctx, resume_epoch)


def _check_resume(run: RunDir, resume_epoch: int | None) -> tuple[str, Any]:
    """``(checkpoint name, its epoch)`` of the checkpoint a resume starts from; an unreadable one is an error now."""
    from sjframe.core.cli_errors import UserError, one_line

    name = "last.pt" if resume_epoch is None else f"epoch_{resume_epoch}.pt"
    try:
        state = run.load_checkpoint(name)
    except FileNotFoundError as exc:  # not a usage error: the run lacks the file (status 1, as during training)
        raise UserError(one_line(exc), status=1) from exc
    return name, state.get("epoch") if isinstance(state, dict) else None


def _get(raw: dict, path: str) -> Any:
    node: Any = raw
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _resume_epoch(values: list[str] | None, resuming: bool) -> int | None:
    """The ``--resume_epoch K`` value (an int >= 0), checked; None when not given."""
    from sjframe.core.config import ConfigError

    if values is None:
        return None
    if not resuming:
        raise ConfigError("--resume_epoch needs --resume <run_dir>")
    if len(values) != 1 or not values[0].isdigit():
        raise ConfigError(f"--resume_epoch takes one epoch number >= 0, got {values!r}")
    return int(values[0])


def _train(method: Method, raw: dict, run: RunDir, resume: bool, ctx: DistContext,
           resume_epoch: int | None = None) -> int:
    """Train into ``run``: exit status 0, 1 (a training error), 130 (Ctrl-C) or 143 (SIGTERM).

    A fresh run that failed before writing anything but its config is removed (nothing left behind).
    """
    from sjframe.core.cli_errors import SIGINT_STATUS, SIGTERM_STATUS, Terminated, UserError, describe

    def say(*values: object, **kwargs: Any) -> None:
        if ctx.is_main:
            print(*values, **kwargs)

    say(f"run_dir: {run.path}", file=sys.stderr, flush=True)
    try:
        summary = method.train(raw, run, resume=resume, resume_epoch=resume_epoch, ctx=ctx)
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        if ctx.is_main and not resume and run.remove_if_empty():
            say(f"train.py: {what} before the first checkpoint; removed the empty run directory {run.path}",
                file=sys.stderr)
        else:
            curves = run.path / "plots" / "training_curves.png"
            saved = f"curves in {curves}; " if curves.is_file() else ""
            say(f"train.py: {what}; {saved}continue with: python train.py --resume {run.path}", file=sys.stderr)
        return SIGTERM_STATUS if isinstance(exc, Terminated) else SIGINT_STATUS
    except Exception as exc:
        removed = ctx.is_main and not resume and run.remove_if_empty()
        if not removed:
            say(f"run_dir: {run.path}")
        if ctx.world_size > 1:
            message, status = describe(exc)
            raise UserError(f"(rank {ctx.rank}) {message}", status) from exc
        raise
    say(json.dumps(summary, default=str))
    say(f"run_dir: {run.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
