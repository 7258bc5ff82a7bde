"""Running it for real: health and readiness probes, Prometheus metrics, and one structured log line per request.

`routes.bp` serves /healthz, /readyz and /metrics; `access.install(app)` adds the per-request hooks (timing, the log
line, the request metrics); `logs.configure()` sets up JSON or text logging once per process.
"""
