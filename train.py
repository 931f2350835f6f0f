"""Train an experiment from a YAML config: ``python train.py <config.yaml> [--key value ...]``.

Dispatches on the config's top-level ``method`` (default ``surrogate``) to
``sjframe.methods.<method>.train``. The run goes to ``<runs_root>/<name>-<timestamp>/`` (``name``:
the config's ``name`` or the file's stem) and the last line printed is ``run_dir: <path>``.

Several processes / GPUs / nodes (surrogate method): ``torchrun --nproc_per_node N train.py <config.yaml>``
(DistributedDataParallel; ``train.batch_size`` is the global batch; rank 0 creates the run directory and
writes every file; ``--resume`` works the same way). See README, "Training on several GPUs".

Options:
  <config.yaml> | --path_to_yaml <config.yaml>   the experiment (seed 003's flag works too)
  --resume <run_dir>                              continue a run from its last checkpoint (exactly)
  --resume <run_dir> --resume_epoch K             continue from the savepoint of epoch K (methods that keep
                                                  savepoints, e.g. exact_time: checkpoints/epoch_K.pt)
  --section.key value [value ...]                 override any config value, e.g. --train.lr 3e-4
  seed 003's flags: --batch-size --test-batch-size --lr --epochs --loss_mode --T --T_empty --dt
    --hidden_size --FS a0 D A --FR a1 --neuron1 tm ts th --neuron2 tm ts th --treg lam b0
    --load_pt_file <ckpt> (initial weights) --log-interval n --seed n
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sjframe.distributed import DistContext
    from sjframe.rundir import RunDir

USAGE = __doc__


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    from sjframe import distributed
    from sjframe.config import TRAIN_FLAGS, ConfigError, apply_overrides, load_yaml, parse_cli, resolve_config
    from sjframe.methods import get_method
    from sjframe.rundir import RunDir

    try:
        args = parse_cli(argv, TRAIN_FLAGS, special=("--path_to_yaml", "--resume", "--resume_epoch", "--runs_root"))
        resume_dir = args.special.get("--resume")
        resume_epoch = _resume_epoch(args.special.get("--resume_epoch"), resume_dir is not None)
        config_paths = list(args.positional) + list(args.special.get("--path_to_yaml", []))
        if resume_dir is not None:
            if len(resume_dir) != 1 or config_paths:
                raise ConfigError("--resume takes one run directory and no config file")
            run = RunDir.open(resume_dir[0])
            raw = run.read_config()
        else:
            if len(config_paths) != 1:
                raise ConfigError(f"give exactly one config file (got {config_paths or 'none'}); see --help")
            raw = load_yaml(config_paths[0])
            run = None
        method_name = raw.get("method", "surrogate")
        method = get_method(method_name)
        if resume_epoch is not None and "resume_epoch" not in inspect.signature(method.train).parameters:
            raise ConfigError(f"method {method_name!r} keeps no savepoints: --resume_epoch is not available "
                              "(--resume continues from the last checkpoint)")
        raw = apply_overrides(raw, args.overrides, typed=method_name == "surrogate")
        backend, device = "auto", "auto"
        if method_name == "surrogate":
            cfg = resolve_config(raw)  # validate before a run directory is created
            backend, device = cfg.train.dist_backend, cfg.device
        if distributed.env_world()[1] > 1 and method_name != "surrogate":
            raise ConfigError(f"method {method_name!r} runs in one process; start it without torchrun "
                              "(only the surrogate method trains distributed)")
        distributed.check_launch(backend, device)
        name = (raw.get("name") or Path(config_paths[0]).stem) if run is None else None
        roots = args.special.get("--runs_root") or [raw.get("runs_root", "runs")]
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    # under torchrun: every process runs from here on, in one process group; rank 0 creates the run
    # directory, writes every file and prints
    with distributed.launch(backend, device) as ctx:
        if run is None:
            run = distributed.create_run_dir(name, roots[0], ctx)
        return _train(method, raw, run, resume_dir is not None, ctx, resume_epoch)


def _resume_epoch(values: list[str] | None, resuming: bool) -> int | None:
    """The ``--resume_epoch K`` value (an int >= 0), checked; None when not given."""
    from sjframe.config import ConfigError

    if values is None:
        return None
    if not resuming:
        raise ConfigError("--resume_epoch needs --resume <run_dir>")
    if len(values) != 1 or not values[0].isdigit():
        raise ConfigError(f"--resume_epoch takes one epoch number >= 0, got {values!r}")
    return int(values[0])


def _train(method: ModuleType, raw: dict, run: RunDir, resume: bool, ctx: DistContext,
           resume_epoch: int | None = None) -> int:
    """Train into ``run``: exit status 0, 1 (a training error) or 130 (interrupted)."""
    from sjframe.engine import NonFiniteLossError

    def say(*values: object, **kwargs: Any) -> None:
        if ctx.is_main:
            print(*values, **kwargs)

    say(f"run_dir: {run.path}", file=sys.stderr, flush=True)
    try:
        kwargs = {} if resume_epoch is None else {"resume_epoch": resume_epoch}
        summary = method.train(raw, run, resume=resume, **kwargs)
    except KeyboardInterrupt:
        say(f"\ntrain.py: interrupted; continue with: python train.py --resume {run.path}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NonFiniteLossError) as exc:
        print(f"train.py: error{'' if ctx.world_size == 1 else f' (rank {ctx.rank})'}: {exc}", file=sys.stderr)
        say(f"run_dir: {run.path}")
        return 1
    say(json.dumps(summary, default=str))
    say(f"run_dir: {run.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
