"""The distributed jobs on Ray: they move data between the core and storage and decide the
parallelism. Stage jobs (ingest, sessionize, train, detect) import none of each other;
:mod:`~logalyzer.jobs.pipeline` and :mod:`~logalyzer.jobs.evaluate` compose them."""
