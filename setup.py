"""The one compiled part of LOGalyzer: the ingest's MD5 of every line (logalyzer/core/_md5lines.c).

Everything else is configured in pyproject.toml. The extension is optional: where it cannot be
built (no C compiler), installing still succeeds and logalyzer.core.md5lines uses hashlib.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "logalyzer.core._md5lines",
            ["logalyzer/core/_md5lines.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
