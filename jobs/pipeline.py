"""Ray job entry point for the pipeline launcher (bulk reprocessing):

    ray job submit --working-dir . -- python jobs/pipeline.py PATH...
        --steps ingest[,sessionize,...] [--rxids R1,R2 | --rxids-file F]

Same options and output as ``logalyzer run``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logalyzer.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["run", *sys.argv[1:]], prog_name="jobs/pipeline.py")
