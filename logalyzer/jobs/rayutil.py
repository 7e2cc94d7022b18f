"""Starting or joining Ray, the same way for every job and face.

``RAY_ADDRESS`` (Ray's own variable, also set by ``ray job submit``) joins a cluster; without it
a new local Ray starts inside the process (never a stale cluster recorded by ``ray start``),
with the dashboard when its dependencies are there.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from logalyzer.errors import LogalyzerError, first_line
from logalyzer.settings import Settings


def ensure_ray(settings: Settings) -> None:
    """``ray.init`` once per process, quietly; Ray Data's own progress bars are turned off
    because the jobs draw their own.

    Quietly means: what Ray's workers print (Ray Train's controller chatter, actor warnings,
    deprecation notices, a worker's own log lines) is not forwarded to this terminal but stays
    in the files of Ray's session folder, which the CLI names when it ends
    (:func:`log_folder`); the jobs' own progress, summaries and errors are the driver's and
    show as before. ``LOGALYZER_RAY_LOG_TO_DRIVER=true`` forwards them again (debugging)."""
    os.environ.setdefault(
        "RAY_DATA_LOGGING_CONFIG", str(Path(__file__).with_name("ray_data_logging.yaml"))
    )
    # imported only now: Ray Data reads RAY_DATA_LOGGING_CONFIG when it is first imported
    import ray
    import ray.data

    global _logs_on_terminal, _uses
    _uses += 1
    if not ray.is_initialized():
        _logs_on_terminal = settings.ray_log_to_driver
        # "local" starts a fresh local Ray: a bare ray.init() would instead join a cluster
        # that `ray start` once recorded on this machine, and hang if that one has died.
        address = settings.ray_address or os.environ.get("RAY_ADDRESS") or "local"
        try:
            ray.init(
                address=address,
                logging_level=logging.ERROR,
                configure_logging=True,
                log_to_driver=settings.ray_log_to_driver,
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


_logs_on_terminal = False  # what ensure_ray chose: workers' output forwarded to this terminal
_uses = 0  # calls of ensure_ray in this process


def uses() -> int:
    """How many times this process asked for Ray (:func:`ensure_ray`): a command that used
    Ray is one during which this grew, whoever started Ray first."""
    return _uses


def log_folder() -> str | None:
    """Where this process's Ray keeps its workers' logs, when they are kept off the terminal;
    None when Ray was not started or joined here, or when they are forwarded."""
    ray = sys.modules.get("ray")  # never imports Ray: a command that did not use it has none
    if ray is None or not ray.is_initialized() or _logs_on_terminal:
        return None
    try:  # no public accessor for the session folder
        node = ray._private.worker.global_worker.node  # noqa: SLF001
        return str(Path(node.get_session_dir_path()) / "logs")
    except Exception:  # noqa: BLE001 (a client connection has no local node: nothing to name)
        return None
