"""LOGalyzer's compiled parts, all on the ingest's hot path: the common logcat header
(logalyzer/core/_headers.c), the MD5 of every line (logalyzer/core/_md5lines.c) and the binary
COPY encoder (logalyzer/store/_pgcopy.c).

Everything else is configured in pyproject.toml. The extensions are optional: where they cannot
be built (no C compiler), installing still succeeds and the modules that use them fall back to
RE2, hashlib and numpy (logalyzer.core.parser, logalyzer.core.md5lines,
logalyzer.store.pgbinary).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "logalyzer.core._headers",
            ["logalyzer/core/_headers.c"],
            depends=["logalyzer/core/_arrow_text.h"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "logalyzer.core._md5lines",
            ["logalyzer/core/_md5lines.c"],
            depends=["logalyzer/core/_arrow_text.h"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "logalyzer.store._pgcopy",
            ["logalyzer/store/_pgcopy.c"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
    ]
)
