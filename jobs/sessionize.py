"""Ray job entry point for the session analysis:

    ray job submit --working-dir . -- python jobs/sessionize.py
        [--rxids R1,R2] [--since TS] [--full]

Same options and output as ``logalyzer sessionize``; the job joins the cluster it was submitted
to (Ray sets RAY_ADDRESS), and the database comes from LOGALYZER_DSN.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logalyzer.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["sessionize", *sys.argv[1:]], prog_name="jobs/sessionize.py")
