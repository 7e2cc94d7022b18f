"""Ray job entry point for training the detectors (Ray Train):

    ray job submit --working-dir . -- python jobs/train.py
        [--detectors lstm,ae] [--workers N] [--gpu]

Same options and output as ``logalyzer train``; the job joins the cluster it was submitted to
(Ray sets RAY_ADDRESS), and the database comes from LOGALYZER_DSN.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logalyzer.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["train", *sys.argv[1:]], prog_name="jobs/train.py")
