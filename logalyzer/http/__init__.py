"""The HTTP face: a FastAPI application over the storage and the core, run by Ray Serve
(:mod:`~logalyzer.http.serving`) or in-process by tests and benchmarks
(:mod:`~logalyzer.http.app`)."""
