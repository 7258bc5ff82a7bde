"""The benchmark: the service and a bare Flask ceiling under the same gunicorn configuration, driven by wrk."""
