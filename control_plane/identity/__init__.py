"""Tenants, subscriptions, service principals, and the token issuer that MSAL and azure-identity talk to."""
