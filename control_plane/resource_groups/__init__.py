"""Microsoft.Resources resource groups, and the subscription-wide generic resource list."""
