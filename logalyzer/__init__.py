"""LOGalyzer: find playback problems in a fleet of Android-TV set-top boxes from their logcat files.

The package is layered (see the README's architecture section):

- pure core, no services: :mod:`logalyzer.files` (paths, RxIDs, streaming decompression),
  :mod:`logalyzer.parser` (line headers, timestamps), :mod:`logalyzer.var` (VAR messages),
  :mod:`logalyzer.synth` (synthetic fleet);
- storage: :mod:`logalyzer.db` and the numbered SQL files under ``sql/``;
- distributed jobs: :mod:`logalyzer.ingest`, :mod:`logalyzer.pipeline`;
- faces: :mod:`logalyzer.cli`, ``jobs/``, ``serve/``.

Importing the package has no side effects: nothing connects, starts or reads a file until a
function is called.
"""

__version__ = "0.1.0"
