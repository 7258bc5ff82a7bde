"""Helpers the tests share: real servers (the service, Azurite, PostgreSQL databases) and real clients."""
