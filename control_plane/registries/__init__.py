"""Microsoft.ContainerRegistry registries: the resource, its admin credentials, and its blob container."""
