"""livesr.adapters.sinks: where results go.

- :mod:`livesr.adapters.sinks.napari_viewer` -- live napari viewer of a results stream
  (:class:`~livesr.adapters.sinks.napari_viewer.LiveViewerSink`,
  :func:`~livesr.adapters.sinks.napari_viewer.run_viewer` for ``livesr run --viewer``).
- ``napari.yaml`` -- the npe2 plugin manifest: the live-stream dock widget
  (:mod:`._napari_widget`) and a reader for livesr output folders
  (:mod:`._napari_reader`).

Importing this package (or any module in it) imports neither napari nor Qt.
"""

from __future__ import annotations

__all__: list[str] = []
