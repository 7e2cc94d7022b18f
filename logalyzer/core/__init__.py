"""The pure core: functions over bytes, Arrow arrays and plain objects. It knows nothing of Ray,
PostgreSQL or HTTP, so the batch jobs and the HTTP service share it and its tests need no
services. Imports only itself and :mod:`logalyzer.errors`."""
