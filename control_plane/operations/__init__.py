"""Long-running operations: durable records, their status URLs, and the worker that runs them.

This package knows no resource type. A resource package registers a handler for each operation kind it starts
(`registries/provisioning.py` registers "registries/create", ...); the worker leases due records and calls the
handler. A record is the durable promise: if a process dies mid-way, the lease expires and another run finishes
the work, so every handler must be safe to run again.
"""
