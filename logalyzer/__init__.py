"""LOGalyzer: find playback problems in a fleet of Android-TV set-top boxes from their logcat files.

The package is layered, one folder a layer, imports pointing down only (README,
"Architecture"; ``tests/test_layers.py`` checks it):

- :mod:`logalyzer.core`: pure (parsing, sessions, features, models, rules, synthetic fleet);
- :mod:`logalyzer.settings`: configuration from the environment;
- :mod:`logalyzer.store`: PostgreSQL (the schema is ``sql/``);
- :mod:`logalyzer.jobs`: the distributed jobs on Ray;
- faces: :mod:`logalyzer.http` (the HTTP service) and :mod:`logalyzer.cli` (the command);
  outside the package ``jobs/``, ``serve/``, ``superset/`` and ``cluster/``.

Importing the package has no side effects: nothing connects, starts or reads a file until a
function is called.
"""

__version__ = "0.1.0"
