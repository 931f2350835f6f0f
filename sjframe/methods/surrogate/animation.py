"""Animated bar charts of cumulative output spike counts per sample (GIF), as seed 002 showed them.

Frame ``t`` of the animation shows, for every output class ``c``, the bar ``N_c(t) = sum_{k<=t} s_k[c]``
of one sample's output spikes ``s [T, C]``; the target class is drawn in another colour.

* :func:`animate_spike_counts`: one sample ``[T, C]`` -> one GIF (matplotlib + pillow writer).
* :func:`spike_count_gifs`: a batch ``[T, B, C]`` -> ``spike_bar_<i>_target<y>.gif`` for the first ``n``.
* :func:`gifs_from_run` / ``python -m sjframe.methods.surrogate.animation <run_dir> [--n 5] [--checkpoint best.pt]``:
  the GIFs of the first ``n`` test samples of a trained ``surrogate`` run (e.g. the CSNN configs),
  written to ``<run_dir>/plots/spike_counts/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

__all__ = ["animate_spike_counts", "gifs_from_run", "main", "spike_count_gifs"]


def animate_spike_counts(
    spikes: torch.Tensor, path: str | Path, target: int | None = None, class_names: Sequence[str] | None = None,
    fps: int = 10, dt_ms: float | None = None, title: str | None = None, stride: int = 1,
) -> Path:
    """Write a GIF of the cumulative spike counts of ``spikes [T, C]`` (one frame every ``stride`` steps)."""
    if not isinstance(spikes, torch.Tensor) or spikes.dim() != 2:
        raise ValueError(f"spikes must be a [T, C] tensor, got {getattr(spikes, 'shape', type(spikes))}")
    if spikes.shape[0] < 1 or spikes.shape[1] < 1:
        raise ValueError(f"spikes must have T >= 1 and C >= 1, got shape {tuple(spikes.shape)}")
    if not torch.isfinite(spikes).all():
        raise ValueError("spikes contain NaN or inf")
    if fps < 1 or stride < 1:
        raise ValueError(f"fps and stride must be >= 1, got {fps}, {stride}")
    n_steps, n_classes = spikes.shape
    if target is not None and not 0 <= target < n_classes:
        raise ValueError(f"target {target} is not a class index in [0, {n_classes})")
    names = [str(c) for c in range(n_classes)] if class_names is None else [str(c) for c in class_names]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names for {n_classes} classes")
    counts = spikes.detach().float().cpu().cumsum(0)
    frames = list(range(0, n_steps, stride))
    if frames[-1] != n_steps - 1:
        frames.append(n_steps - 1)
    colours = ["tab:orange" if c == target else "tab:blue" for c in range(n_classes)]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bars = ax.bar(names, counts[0].tolist(), color=colours)
    ax.set_ylim(0, max(1.0, float(counts[-1].max())) * 1.1)
    ax.set_xlabel("class")
    ax.set_ylabel("cumulative spike count")
    head = title or ("output spike counts" + (f" (target {names[target]})" if target is not None else ""))

    def draw(t: int) -> list:
        for bar, height in zip(bars, counts[t].tolist()):
            bar.set_height(height)
        when = f"t = {(t + 1) * dt_ms:g} ms" if dt_ms else f"step {t + 1}/{n_steps}"
        ax.set_title(f"{head}, {when}", fontsize=9)
        return list(bars)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim = FuncAnimation(fig, draw, frames=frames, blit=False)
    try:
        anim.save(str(path), writer=PillowWriter(fps=fps))
    finally:
        plt.close(fig)
    return path


def spike_count_gifs(
    spikes: torch.Tensor, targets: torch.Tensor | Sequence[int], folder: str | Path, n: int = 5,
    prefix: str = "spike_bar", **kwargs,
) -> list[Path]:
    """GIFs ``<prefix>_<i>_target<y>.gif`` for the first ``n`` samples of ``spikes [T, B, C]``."""
    if not isinstance(spikes, torch.Tensor) or spikes.dim() != 3:
        raise ValueError(f"spikes must be a [T, B, C] tensor, got {getattr(spikes, 'shape', type(spikes))}")
    targets = [int(v) for v in (targets.tolist() if isinstance(targets, torch.Tensor) else targets)]
    if len(targets) != spikes.shape[1]:
        raise ValueError(f"{len(targets)} targets for a batch of {spikes.shape[1]}")
    folder = Path(folder)
    return [animate_spike_counts(spikes[:, i], folder / f"{prefix}_{i}_target{targets[i]}.gif", target=targets[i], **kwargs)
            for i in range(min(n, spikes.shape[1]))]


@torch.no_grad()
def gifs_from_run(run_dir: str | Path, n: int = 5, checkpoint: str = "best.pt", stride: int = 1) -> list[Path]:
    """Spike-count GIFs of the first ``n`` test samples of a ``surrogate``-method run."""
    from spikingjelly.activation_based import functional as sj_functional

    from sjframe.core.rundir import RunDir
    from sjframe.core.runtime import load_weights, select_device
    from sjframe.data import build_dataset, time_major_collate
    from sjframe.methods.surrogate.config import resolve_config
    from sjframe.models import build_model

    run = RunDir.open(run_dir)
    cfg = resolve_config(run.read_config())
    ds = build_dataset(cfg.data.name, "test", **cfg.data.dataset_options("test"))
    device = select_device(cfg.device)
    model = build_model(cfg.model.name, cfg.model.options, tuple(ds.input_shape), int(ds.num_classes)).to(device)
    state, path = run.read_checkpoint(checkpoint)
    load_weights(model, state["model"], f"checkpoint {path}")
    model.eval()
    x, y = time_major_collate([ds[i] for i in range(min(n, len(ds)))])
    sj_functional.reset_net(model)
    out = model(x.to(device))
    if out.spikes is None:
        raise ValueError(f"model {cfg.model.name!r} has no spiking output to animate")
    return spike_count_gifs(out.spikes.cpu(), y, run.plots / "spike_counts", n=n,
                            dt_ms=getattr(ds, "dt_ms", None), stride=stride)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Spike-count GIFs of a trained run's first test samples.")
    parser.add_argument("run_dir")
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--checkpoint", default="best.pt")
    parser.add_argument("--stride", type=int, default=1, help="steps per animation frame")
    args = parser.parse_args(argv)
    for path in gifs_from_run(args.run_dir, args.n, args.checkpoint, args.stride):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
