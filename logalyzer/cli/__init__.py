"""The ``logalyzer`` command: a thin click face over the library, one subcommand per stage.

The commands live by topic in this package (:mod:`~logalyzer.cli.data`,
:mod:`~logalyzer.cli.search`, :mod:`~logalyzer.cli.ml`, :mod:`~logalyzer.cli.alerts`,
:mod:`~logalyzer.cli.service`, :mod:`~logalyzer.cli.database`);
their common rules (errors as one line plus a hint, exit 1; usage errors exit 2) are
:mod:`~logalyzer.cli.common`. A command imports its Ray job only when it runs, so
``logalyzer -h`` answers at once.

Environment: ``LOGALYZER_DSN`` (PostgreSQL URL; unset = embedded PostgreSQL under
``LOGALYZER_HOME``, default ``~/.local/share/logalyzer``), ``LOGALYZER_TZ`` (the fleet's
zone, default UTC), ``RAY_ADDRESS`` (a Ray cluster; unset = local Ray).
"""

from __future__ import annotations

import click

from logalyzer.cli import alerts, data, database, ml, search, service, templates
from logalyzer.cli.common import CONTEXT


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="logalyzer", message="%(prog)s %(version)s")
def main() -> None:
    """LOGalyzer: find playback problems in a fleet of Android-TV set-top boxes from their logs.

    \b
    Environment:
      LOGALYZER_DSN   PostgreSQL URL (unset: embedded PostgreSQL under LOGALYZER_HOME)
      LOGALYZER_HOME  embedded state (default ~/.local/share/logalyzer)
      LOGALYZER_TZ    the fleet's local time zone (default UTC)
      RAY_ADDRESS     a Ray cluster to run on (unset: a local Ray)
    """


for command in (
    data.synth,
    data.ingest,
    data.sessionize,
    templates.templates,
    data.run,
    search.grep,
    ml.train,
    ml.detect,
    ml.evaluate,
    ml.models,
    alerts.alerts,
    service.serve,
    service.tokens,
    database.db,
):
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    main()
