"""Ray job entry point for scoring sessions (Ray Data actor pool):

    ray job submit --working-dir . -- python jobs/detect.py [--detectors lstm,ae] [--rescore]

Same options and output as ``logalyzer detect``; the job joins the cluster it was submitted to
(Ray sets RAY_ADDRESS), and the database comes from LOGALYZER_DSN.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logalyzer.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["detect", *sys.argv[1:]], prog_name="jobs/detect.py")
