"""Managed identities: the Microsoft.ManagedIdentity/userAssignedIdentities resource type, and the identities
(system- and user-assigned) that resources such as registries carry."""
