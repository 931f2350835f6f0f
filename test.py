"""Evaluate a trained run on the test split: ``python test.py <run_dir | checkpoint.pt> [--key value ...]``.

The test window is the one given here (``--T``, ``--T_empty``; else the config's ``data.test_T`` /
``data.test_T_empty``; else the training window): the paper tests on longer windows than it
trains on. Prints a table (FS and FR accuracy, N_s overall and per layer, td50/td90 in steps and
ms, firing rate of the predicted vs the other output neurons), writes it with a JSON report under
``<run_dir>/reports/`` and saves spike rasters and first-spike pattern plots under ``plots/``. The table
starts with the run's protocol (``train.protocol``) and gives FS accuracy by the paper's rule and by the
first output spike only, FR accuracy and the share of silent outputs; the confusion matrices (a silent
column last) go to ``reports/<tag>-confusion_{fs,fr}.json`` and ``plots/<tag>/confusion_{fs,fr}.png``.
A run trained with ``train.protocol: paper`` has no ``best.pt``: its last checkpoint is evaluated.

Under ``torchrun --nproc_per_node N test.py <run_dir>`` (methods that evaluate distributed) each process evaluates
every N-th test sample, the metrics are summed over the processes, and rank 0 prints and writes.

Options (every one test.py accepts):
  <run_dir> | <checkpoint.pt> | --load_pt_file <...>   what to evaluate (seed 003's flag works too)
  <aggregate dir>                                       print a multi-seed aggregate (train.py --seeds; no other option)
  --checkpoint best|last|<file>                        which checkpoint of the run (default best)
  --best_model                                          the best checkpoint (seed 003's flag)
  --path_to_yaml <config.yaml>                          a config to use instead of the run's
  --T n --T_empty n                                     the test window (steps)
  --section.key value [value ...]                       any other config value (e.g. --train.test_batch_size 64,
                                                        --device cpu, --eval.plots false)
  seed 003's flags: --batch-size --test-batch-size --lr --epochs --loss_mode --dt --hidden_size n [n ...]
    --FS a0 D A --FR a1 --neuron1 tm ts th --neuron2 tm ts th --treg lam b0 --log-interval n --seed n
  --debug                                               show the traceback of an error (also: SJFRAME_DEBUG=1)
  -h, --help                                            this text

Config keys: see README "Experiments: configs, train.py / test.py, run directories", configs/default.yaml and
sjframe/methods/surrogate/config.py; any key as --section.key value.

Every failure ends in one line on stderr (test.py: error: ...) and an exit status: 2 a bad command line,
config or checkpoint path; 1 a failure while evaluating; 130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = __doc__


def _locate(target: str) -> tuple[Path, Path | None]:
    """(run directory, checkpoint file or None) of a run directory or a checkpoint path."""
    path = Path(target)
    if path.is_dir():
        return path, None
    if path.is_file():
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run, path
    raise FileNotFoundError(f"{target} is neither a run directory nor a checkpoint file")


SPECIAL = ("--path_to_yaml", "--load_pt_file", "--checkpoint")


def main(argv: list[str]) -> int:
    """Run test.py with ``argv``; every failure ends in one line on stderr and an exit status (see USAGE)."""
    from sjframe.core.cli_errors import run_cli

    return run_cli("test.py", _main, argv)


def _main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    from sjframe.methods.aggregate import is_aggregate_dir, print_aggregate

    if argv and is_aggregate_dir(argv[0]):  # train.py --seeds ...: print its table
        if len(argv) > 1:
            from sjframe.core.cli_errors import UserError

            raise UserError(f"{argv[0]} is a multi-seed aggregate: test.py takes no other option with it", status=2)
        return print_aggregate(argv[0])
    from sjframe.core import distributed
    from sjframe.core.cli_errors import UserError, one_line
    from sjframe.core.config import ConfigError, load_yaml, parse_cli
    from sjframe.core.rundir import RunDir, read_checkpoint
    from sjframe.core.runtime import select_device
    from sjframe.methods import method_of

    try:
        args = parse_cli(argv, special=SPECIAL)
        targets = list(args.positional) + list(args.special.get("--load_pt_file", []))
        if len(targets) != 1:
            raise ConfigError(f"give exactly one run directory or checkpoint (got {targets or 'none'}); see --help")
        run_path, ckpt_file = _locate(targets[0])
        if "--path_to_yaml" in args.special:
            raw = load_yaml(args.special["--path_to_yaml"][0])
        elif (run_path / "config.yaml").is_file():
            raw = RunDir.open(run_path).read_config()
        elif ckpt_file is not None:
            state = read_checkpoint(ckpt_file)
            if not isinstance(state, dict) or "config" not in state:
                raise ConfigError(f"{ckpt_file} holds no config; pass --path_to_yaml <config.yaml>")
            raw = state["config"]
        else:
            raise ConfigError(f"{run_path} has no config.yaml; pass --path_to_yaml <config.yaml>")
        method = method_of(raw)
        raw = method.apply_overrides(raw, args.overrides(method.cli_options("test")))
        settings = method.parse(raw)
        if (run_path / "config.yaml").is_file():
            run = RunDir.open(run_path)
        else:  # a loose checkpoint: reports go to a folder next to it
            run = RunDir(run_path)
        if "--checkpoint" in args.special:
            checkpoint = args.special["--checkpoint"][0]
        elif ckpt_file is not None:
            checkpoint = str(ckpt_file)
        else:
            checkpoint = method.default_checkpoint(settings)
        world = distributed.env_world()[1]
        if world > 1 and not method.capabilities.supports_distributed:
            raise ConfigError(f"method {method.name!r} evaluates in one process; start it without torchrun")
        backend, device = method.dist_backend(settings), method.device_spec(settings)
        if world == 1:
            select_device(device, method.device_key())
        distributed.check_launch(backend, device)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(one_line(exc), status=2) from exc
    with distributed.launch(backend, device) as ctx:  # a process group under torchrun, else nothing
        report = method.evaluate(raw, run, checkpoint, ctx=ctx)
        if not ctx.is_main:
            return 0
    table = report.get("table")
    if table:
        print(table)
    metrics = report.get("metrics", {})
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    silent = metrics.get("silent_fraction")
    if metrics.get("primary") == "logits" and metrics.get("n_s") is None:  # a non-spiking baseline: no spike metric
        print(f"accuracy (argmax of the logits): {fmt(metrics.get('acc'))} %   (non-spiking model: no spike metrics)")
    else:
        print(f"FS accuracy: {fmt(metrics.get('acc_fs'))} %   FS accuracy (first spike only): "
              f"{fmt(metrics.get('acc_fs_spike'))} %   FR accuracy: {fmt(metrics.get('acc_fr'))} %   silent outputs: "
              f"{fmt(None if silent is None else 100.0 * silent)} %")
    for kind, path in (report.get("confusion") or {}).items():
        plot = [p for p in report.get("plots") or [] if p.endswith(f"confusion_{kind}.png")]
        print(f"confusion ({kind.upper()}): {path}" + (f", plot {plot[0]}" if plot else ""))
    print(f"report: {run.path / 'reports'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
