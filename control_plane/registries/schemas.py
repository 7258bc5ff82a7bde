"""Registry request bodies (marshmallow) and the Registry JSON a client reads back.

Loading keeps only the keys a client sent, so the service can tell "absent" (PUT: default; PATCH: unchanged)
from a value. Enum values are matched case-insensitively and stored in their canonical spelling.
"""

from __future__ import annotations

import copy
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from control_plane.managed_identities.schemas import ResourceIdentity

SKUS = ("Basic", "Standard", "Premium", "Classic")
REGISTRY_TYPE = "Microsoft.ContainerRegistry/registries"


class ArmEnum(fields.String):
    def __init__(self, choices: tuple[str, ...], **kwargs):
        super().__init__(**kwargs)
        self.choices = {c.lower(): c for c in choices}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return self.choices[text.lower()]
        except KeyError:
            raise ValidationError(f"must be one of: {', '.join(self.choices.values())}") from None


class StrictBoolean(fields.Boolean):
    """JSON true/false only: "yes" or 1 is a client bug ARM refuses, not a boolean (and 1 == True in Python)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


STATUS = ("enabled", "disabled")


class Strict(Schema):
    class Meta:
        unknown = EXCLUDE


class IpRule(Strict):
    action = ArmEnum(("Allow",), load_default="Allow")
    value = fields.String(required=True, validate=validate.Length(min=1, max=64))


class NetworkRuleSet(Strict):
    defaultAction = ArmEnum(("Allow", "Deny"), load_default="Allow")
    ipRules = fields.List(fields.Nested(IpRule), load_default=list)


class StatusPolicy(Strict):
    status = ArmEnum(STATUS)


class TrustPolicy(Strict):
    type = ArmEnum(("Notary",))
    status = ArmEnum(STATUS)


class RetentionPolicy(Strict):
    days = fields.Integer(validate=validate.Range(min=0, max=365), strict=True)
    status = ArmEnum(STATUS)


class Policies(Strict):
    quarantinePolicy = fields.Nested(StatusPolicy)
    trustPolicy = fields.Nested(TrustPolicy)
    retentionPolicy = fields.Nested(RetentionPolicy)
    exportPolicy = fields.Nested(StatusPolicy)
    azureADAuthenticationAsArmPolicy = fields.Nested(StatusPolicy)


class KeyVaultProperties(Strict):
    keyIdentifier = fields.String()
    identity = fields.String()


class Encryption(Strict):
    status = ArmEnum(STATUS)
    keyVaultProperties = fields.Nested(KeyVaultProperties)


class Sku(Strict):
    name = ArmEnum(SKUS, required=True)


class UpdatableProperties(Strict):
    adminUserEnabled = StrictBoolean()
    networkRuleSet = fields.Nested(NetworkRuleSet)
    policies = fields.Nested(Policies)
    encryption = fields.Nested(Encryption)
    dataEndpointEnabled = StrictBoolean()
    publicNetworkAccess = ArmEnum(("Enabled", "Disabled"))
    networkRuleBypassOptions = ArmEnum(("AzureServices", "None"))
    networkRuleBypassAllowedForTasks = StrictBoolean()
    anonymousPullEnabled = StrictBoolean()
    roleAssignmentMode = ArmEnum(("AbacRepositoryPermissions", "LegacyRegistryPermissions"))


class CreateProperties(UpdatableProperties):
    zoneRedundancy = ArmEnum(("Enabled", "Disabled"))


class RegistryPut(Strict):
    location = fields.Raw(load_default=None)
    tags = fields.Raw(load_default=None)
    sku = fields.Nested(Sku, required=True)
    identity = fields.Nested(ResourceIdentity, allow_none=True)
    properties = fields.Nested(CreateProperties, load_default=dict, allow_none=True)


class RegistryPatch(Strict):
    tags = fields.Raw()
    sku = fields.Nested(Sku)
    identity = fields.Nested(ResourceIdentity, allow_none=True)
    # zoneRedundancy is read so that a PATCH changing it is refused, not silently dropped; the service checks.
    properties = fields.Nested(CreateProperties, allow_none=True)


class NameCheck(Strict):
    name = fields.String(required=True)
    type = fields.String(required=True)


class RegenerateCredential(Strict):
    name = fields.String(required=True, validate=validate.OneOf(("password", "password2")))


DEFAULT_PROPERTIES: dict[str, Any] = {
    "adminUserEnabled": False,
    "networkRuleSet": {"defaultAction": "Allow", "ipRules": []},
    "policies": {
        "quarantinePolicy": {"status": "disabled"},
        "trustPolicy": {"type": "Notary", "status": "disabled"},
        "retentionPolicy": {"days": 7, "status": "disabled"},
        "exportPolicy": {"status": "enabled"},
        "azureADAuthenticationAsArmPolicy": {"status": "enabled"},
    },
    "encryption": {"status": "disabled"},
    "dataEndpointEnabled": False,
    "publicNetworkAccess": "Enabled",
    "networkRuleBypassOptions": "AzureServices",
    "networkRuleBypassAllowedForTasks": False,
    "zoneRedundancy": "Disabled",
    "anonymousPullEnabled": False,
    "roleAssignmentMode": "LegacyRegistryPermissions",
}


def merge(base: dict[str, Any], patch: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON merge patch (RFC 7396) where an explicit null resets a property to its default."""
    result = copy.deepcopy(base)
    for key, value in patch.items():
        default = (defaults or {}).get(key)
        if value is None:
            if default is None:
                result.pop(key, None)
            else:
                result[key] = copy.deepcopy(default)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value, default if isinstance(default, dict) else None)
        else:
            result[key] = copy.deepcopy(value)
    return result


def with_defaults(properties: dict[str, Any]) -> dict[str, Any]:
    return merge(DEFAULT_PROPERTIES, properties, DEFAULT_PROPERTIES)
