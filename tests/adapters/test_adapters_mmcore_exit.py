"""A process streaming from the simulated core with a stuck feedback hook exits 0."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import threading
    from livesr.adapters.feedback import HookRunner, MicroscopeController, Result
    from livesr.adapters.sources.mmcore import MMCoreSource
    from livesr.sim import SimConfig, make_core

    def main():
        forever = threading.Event()
        with make_core(SimConfig.blinking(shape=(16, 16))) as core:
            ctl = MicroscopeController(core)
            runner = HookRunner([lambda r, c: forever.wait()], ctl)
            src = MMCoreSource(core)
            n = 0
            for seq, frame, meta in src:
                runner.submit(Result(index=seq))
                n += 1
                if n == 30:
                    src.close()
            runner.close(timeout_s=0.2)  # the stuck hook is left on its daemon thread
            ctl.close()
        print("frames", n, src.frames_acquired)

    main()
    """
)


def test_adapters_mmcore_process_exits_cleanly():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "frames" in proc.stdout
    assert "FATAL" not in proc.stderr
