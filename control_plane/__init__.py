"""A control plane for container registries that speaks the Azure Resource Manager wire protocol."""

__version__ = "0.1.0"
