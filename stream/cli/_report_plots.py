"""PNG figures of ``livesr bench --report`` (matplotlib, Agg canvas, no pyplot).

Each function takes the plain data of one :mod:`livesr.stream.cli._report_measure`
experiment and writes one small PNG (about 800×450 px, well under 300 KB).
matplotlib is imported inside the functions; no global backend is set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_DPI = 100
_SIZE = (8.0, 4.5)


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = _SIZE) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI, format="png")
    logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return path


def plot_esrrf(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Input frames/s vs frame size (log-log), one line per implementation."""
    fig, axes = _figure()
    ax = axes[0][0]
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    for impl in impls:
        mine = sorted((r for r in rows if r["impl"] == impl), key=lambda r: r["size"])
        sizes = [r["size"] ** 2 for r in mine]
        nanopyx = impl.startswith("nanopyx")
        ax.plot(
            sizes,
            [r["fps"] for r in mine],
            marker="s" if nanopyx else "o",
            linestyle="--" if nanopyx else "-",
            color="black" if nanopyx else None,
            label=impl,
        )
    all_sizes = sorted({r["size"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([s * s for s in all_sizes], [f"{s}²" for s in all_sizes])
    ax.minorticks_off()
    ax.set_xlabel("frame size (pixels)")
    ax.set_ylabel("input frames / s (1 / median time per frame)")
    ax.set_title("per-frame eSRRF map, M=5, R=1.5, S=1, intensity weighting")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small", ncols=2)
    return _save(fig, path)


def _hist_ms(
    ax: Any, values: Sequence[float], label: str, color: str | None = None
) -> None:
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data) & (data > 0)]
    if data.size == 0:
        ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center")
        return
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        hi = lo * 1.01 + 1e-6
    bins = np.geomspace(lo, hi, 40)
    ax.hist(data, bins=bins, color=color, alpha=0.75, label=label)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    for q, style in ((50, "--"), (99, ":")):
        v = float(np.percentile(data, q))
        ax.axvline(
            v, color="black", linestyle=style, linewidth=1, label=f"p{q} {v:.3g} ms"
        )
    ax.set_xlabel("ms (log scale)")
    ax.set_ylabel("frames")
    ax.legend(fontsize="small")


def plot_transport(result: Mapping[str, Any], path: Path) -> Path:
    """Histograms of receive − t_send (wire) and receive − t_acq (age)."""
    fig, axes = _figure(1, 2)
    h, w = result["shape"]
    _hist_ms(axes[0][0], result["latency_ms"], "receive − t_send", "tab:blue")
    axes[0][0].set_title(f"wire latency, {h}×{w} @ {result['offered_fps']:g} fps")
    _hist_ms(axes[0][1], result["age_ms"], "receive − t_acq", "tab:orange")
    axes[0][1].set_title("age at the ingest (ring + credit + wire)")
    return _save(fig, path)


def plot_pipeline(result: Mapping[str, Any], path: Path) -> Path:
    """Histogram of frame acquired -> SR image published, one sample per window."""
    fig, axes = _figure(size=(6.5, 4.0))
    ax = axes[0][0]
    _hist_ms(ax, result["latency_ms"], "acquired → published", "tab:green")
    ax.set_ylabel("published images")
    ax.set_title(
        f"end-to-end, {result['size']}² @ {result['fps']:g} fps, "
        f"window {result['window']}, stride {result['stride']}"
    )
    return _save(fig, path)


def plot_agent(result: Mapping[str, Any], path: Path) -> Path:
    """Run time per call, agent vs always the favourite (NanoPyx Ext. Data Fig. 7)."""
    fig, axes = _figure()
    ax = axes[0][0]
    calls = np.arange(result["calls"])
    always = np.asarray(result["always_s"]) * 1e3
    agent = np.asarray(result["agent_s"]) * 1e3
    start, stop = result["delayed"]
    ax.axvspan(start - 0.5, stop - 0.5, color="0.9", label="induced delay")
    ax.plot(
        calls,
        always,
        color="tab:red",
        linewidth=1,
        label=f"always {result['favourite']}",
    )
    chose_other = np.asarray([i == result["other"] for i in result["agent_impl"]])
    ax.plot(calls, agent, color="tab:blue", linewidth=1, label="agent")
    ax.scatter(
        calls[chose_other],
        agent[chose_other],
        s=8,
        color="tab:blue",
        zorder=3,
        label=f"agent chose {result['other']}",
    )
    ax.axhline(always.mean(), color="tab:red", linestyle="--", linewidth=1)
    ax.axhline(agent.mean(), color="tab:blue", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("call")
    ax.set_ylabel("run time per call (ms, log)")
    ax.set_title(
        f"esrrf_map {result['size']}² under an induced delay: "
        f"mean ×{result['ratio']:.2f} "
        "(dashed: means)"
    )
    ax.legend(fontsize="small", loc="upper right")
    return _save(fig, path)
