"""Ray job entry point for the fleet alerts check:

    ray job submit --working-dir . -- python jobs/alerts.py [--since TS] [--grain hour|day] [--json]

Same options and output as ``logalyzer alerts``; the database comes from LOGALYZER_DSN and the
webhook from LOGALYZER_ALERT_WEBHOOK (the check itself runs in the driver: it is one SQL
aggregation, see logalyzer/jobs/alerts.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logalyzer.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["alerts", *sys.argv[1:]], prog_name="jobs/alerts.py")
