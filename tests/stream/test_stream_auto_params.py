"""`livesr run --auto-params`: the QnR sweep on the newest raw frames during
acquisition, its best pair applied live (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

from livesr.stream.cli import main


def test_auto_params_picks_the_offline_best_pair_within_a_few_windows(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "auto.toml"
    cfg.write_text(
        "[esrrf]\nauto_params_every = 2\n[sim]\nseed = 4\n"
        "[sim.camera]\nshape = [48, 48]\n"
    )
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "--config",
            str(cfg),
            "--output",
            str(out),
            "--frames",
            "300",
            "--window",
            "20",
            "--stride",
            "20",
            "--magnification",
            "2",
            "--auto-params",
            "--no-status",
        ]
    )
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    choices = s["auto_params"]["choices"]
    assert choices, "no sweep finished during the run"
    first = choices[0]
    a, b = first["frames"]
    assert b < 20 * 8  # decided within a few windows (8 of 15)
    raw = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][a : b + 1, 0, 0]
    from livesr.kernels import esrrf_sweep

    off = esrrf_sweep(np.asarray(raw), magnification=2)
    i = list(off.sensitivities).index(first["sensitivity"])
    j = list(off.radii).index(first["radius"])
    best = float(np.nanmax(off.qnr))
    assert float(off.qnr[i, j]) >= 0.95 * best
    assert abs(first["qnr"] - float(off.qnr[i, j])) <= 1e-3 * max(1.0, best)
    # applied live when it differs from the configured pair, at a recorded frame
    changed = [c for c in choices if c["applied_from_frame"] is not None]
    for c in changed:
        assert {
            "frame_index": c["applied_from_frame"],
            "changes": {"radius": c["radius"], "sensitivity": c["sensitivity"]},
        } in s["param_changes"]
    assert s["params_final"]["radius"] == choices[-1]["radius"]
    assert s["params_final"]["sensitivity"] == choices[-1]["sensitivity"]
