"""livesr.adapters (see the package README section).  Importing it starts nothing.

- :func:`mda_output` -- a pymmcore-plus MDA output handler that streams every frame
  into the lossless pipeline: ``core.mda.run(sequence, output=mda_output("out"))``.
- :func:`attach` -- a listener on a sequence acquisition already running on a core
  (live mode), gaps reported when the circular buffer overwrote frames.
"""

from __future__ import annotations

from livesr.adapters._mm_live import AcquisitionListener, MDAOutput, attach, mda_output

__all__: list[str] = ["AcquisitionListener", "MDAOutput", "attach", "mda_output"]
