"""Ray job entry point for the ingest:

    ray job submit --working-dir . -- python jobs/ingest.py PATH... [--rxid R] [--tz ZONE]

Same options and output as ``logalyzer ingest``; the job joins the cluster it was submitted to
(Ray sets RAY_ADDRESS), and the database comes from LOGALYZER_DSN (pass it with
``--runtime-env-json '{"env_vars": {"LOGALYZER_DSN": "..."}}'``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logalyzer.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["ingest", *sys.argv[1:]], prog_name="jobs/ingest.py")
