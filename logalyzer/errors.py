"""Errors a user can cause, each shown by the CLI as one line with a hint (no traceback).

Anything else that escapes is a bug, and the CLI lets its traceback through.
"""


def first_line(exc: BaseException, with_type: bool = True) -> str:
    """An exception as one line: ``Type: first line of its text`` (or the text alone), what a
    summary, a ledger row or an HTTP answer shows instead of a traceback."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if not with_type:
        return line or type(exc).__name__
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class LogalyzerError(Exception):
    """Base class: ``str(err)`` is the one-line message, ``err.hint`` what to do about it."""

    hint: str = ""
    exit_code: int = 1  # the CLI's exit status for this error (README: "Exit status")

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class DatabaseUnreachable(LogalyzerError):
    hint = (
        "check LOGALYZER_DSN (or unset it to use the embedded PostgreSQL) and that the server is up"
    )


class DatabaseGone(LogalyzerError):
    """The database stopped answering mid-run, and retries with backoff did not bring it back:
    what was committed stays, the files not finished are read again by the next run."""

    hint = (
        "check that the PostgreSQL server is up, then re-run the same command: it finishes the rest"
    )
    exit_code = 4

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(f"the database went away: {message}", hint)


class FilesFailed(LogalyzerError):
    """Some input files could not be loaded (each is listed above the error)."""

    hint = "see the reasons listed above; a re-run tries the failed files again"
    exit_code = 3


class InvalidIdentifier(LogalyzerError):
    hint = "an RxID is 'R' followed by 10 digits, e.g. R1234567890"


class NoInputFiles(LogalyzerError):
    hint = "give files or folders holding *.gz / *.log logcat files"


class PortInUse(LogalyzerError):
    hint = "pick another one with --port (or LOGALYZER_SERVE_PORT)"


class Unauthorized(LogalyzerError):
    hint = "send 'Authorization: Bearer <secret>' with a token from `logalyzer tokens create`"


class Forbidden(LogalyzerError):
    hint = "admin routes need an admin token; a device token only reaches its own box's data"


class NotFound(LogalyzerError):
    hint = "list what exists with GET /jam-software/pushes (or `logalyzer tokens list`)"


class IdempotencyConflict(LogalyzerError):
    hint = "an Idempotency-Key names one request: use a new key for a different push"


class InvalidRequest(LogalyzerError):
    """Well-formed but unusable input (422), e.g. raw lines that hold no session."""


class UnknownSessions(LogalyzerError):
    """Scores asked to be stored for sessions the ``sessions`` table does not hold (409)."""

    hint = "store scores only for sessions the batch job knows: ingest and sessionize first"


class NotReady(LogalyzerError):
    """The service cannot answer yet, e.g. no detector loaded (503)."""

    hint = "train detectors (logalyzer train), then retry; /readyz says what is missing"


class BadSearch(LogalyzerError):
    """A search that cannot run as asked (a bad time, window, pattern or cursor): 400."""

    hint = (
        "times are ISO 8601 (2024-03-18, 2024-03-18T07:00:00Z, ...+01:00; no zone = UTC); "
        "see `logalyzer grep --help`"
    )


class UnknownDevice(NotFound):
    """A search named a box that has no lines stored (no partition): 404 over HTTP."""

    hint = "ingest the box's files first; `logalyzer db info` counts the devices loaded"


class TemplatesBusy(LogalyzerError):
    """Another ``logalyzer templates`` run holds the database's templates lock."""

    hint = "wait for it to finish, then run again"
