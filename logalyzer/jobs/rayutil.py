"""Starting or joining Ray, the same way for every job and face.

``RAY_ADDRESS`` (Ray's own variable, also set by ``ray job submit``) joins a cluster; without it
a new local Ray starts inside the process (never a stale cluster recorded by ``ray start``),
with the dashboard when its dependencies are there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from logalyzer.errors import LogalyzerError, first_line
from logalyzer.settings import Settings


def ensure_ray(settings: Settings) -> None:
    """``ray.init`` once per process, quietly; Ray Data's own progress bars are turned off
    because the jobs draw their own."""
    os.environ.setdefault(
        "RAY_DATA_LOGGING_CONFIG", str(Path(__file__).with_name("ray_data_logging.yaml"))
    )
    # imported only now: Ray Data reads RAY_DATA_LOGGING_CONFIG when it is first imported
    import ray
    import ray.data

    if not ray.is_initialized():
        # "local" starts a fresh local Ray: a bare ray.init() would instead join a cluster
        # that `ray start` once recorded on this machine, and hang if that one has died.
        address = settings.ray_address or os.environ.get("RAY_ADDRESS") or "local"
        try:
            ray.init(
                address=address,
                logging_level=logging.ERROR,
                configure_logging=True,
                log_to_driver=True,
                include_dashboard=None,
            )
        except Exception as exc:  # noqa: BLE001
            # Ray raises a bare Exception when its node times out starting (an overloaded host)
            raise LogalyzerError(
                f"Ray did not start ({address}): {first_line(exc, with_type=False)}",
                hint="the machine may be overloaded: re-run; to join a cluster set RAY_ADDRESS",
            ) from exc
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


def count(counter, n: int) -> None:
    """Add ``n`` to a ``ray.util.metrics.Counter``, which raises on ``inc(0)`` (a device with
    no VAR events, a chunk that added no bytes)."""
    if n > 0:
        counter.inc(n)
