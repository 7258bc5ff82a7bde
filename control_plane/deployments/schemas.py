"""Deployment request bodies, and the JSON clients read back: deployments, their operations, what-if results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, fields

from control_plane.deployments.models import Deployment, DeploymentOperation
from control_plane.registries.schemas import ArmEnum

DEPLOYMENT_TYPE = "Microsoft.Resources/deployments"
MODES = ("Incremental", "Complete")
RESULT_FORMATS = ("FullResourcePayloads", "ResourceIdOnly")


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class WhatIfSettings(_Lenient):
    resultFormat = ArmEnum(RESULT_FORMATS, load_default="FullResourcePayloads")


class DeploymentProperties(_Lenient):
    # Raw: az sends the template as parsed JSONC objects that remember their line and column.
    template = fields.Raw(load_default=None, allow_none=True)
    templateLink = fields.Dict(load_default=None, allow_none=True)
    parameters = fields.Dict(load_default=None, allow_none=True)
    parametersLink = fields.Dict(load_default=None, allow_none=True)
    mode = ArmEnum(MODES, required=True)
    debugSetting = fields.Dict(load_default=None, allow_none=True)
    whatIfSettings = fields.Nested(WhatIfSettings, load_default=None, allow_none=True)


class DeploymentPut(_Lenient):
    location = fields.Raw(load_default=None)
    tags = fields.Raw(load_default=None)
    properties = fields.Nested(DeploymentProperties, required=True)


def timestamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else "0001-01-01T00:00:00Z"


def duration(started: datetime | None, ended: datetime | None) -> str:
    """ISO-8601 duration, as ARM writes it (`PT22.8356799S`)."""
    if started is None or ended is None:
        return "PT0S"
    return f"PT{max((ended - started).total_seconds(), 0):.7f}S"


def to_arm(deployment: Deployment, now: datetime | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "templateHash": deployment.template_hash,
        "parameters": deployment.parameters,
        "mode": deployment.mode,
        "provisioningState": deployment.provisioning_state,
        "timestamp": timestamp(deployment.ended_at or deployment.started_at),
        "duration": duration(deployment.started_at, deployment.ended_at or now),
        "correlationId": deployment.correlation_id,
        "providers": deployment.providers,
        "dependencies": deployment.dependencies,
    }
    if deployment.outputs is not None:
        properties["outputs"] = deployment.outputs
    if deployment.output_resources:
        properties["outputResources"] = deployment.output_resources
    if deployment.debug_setting:
        properties["debugSetting"] = deployment.debug_setting
    if deployment.error:
        properties["error"] = deployment.error
    body: dict[str, Any] = {"id": deployment.arm_id, "name": deployment.name, "type": DEPLOYMENT_TYPE}
    if deployment.location:
        body["location"] = deployment.location
    if deployment.tags:
        body["tags"] = deployment.tags
    body["properties"] = properties
    return body


def operation_to_arm(deployment: Deployment, operation: DeploymentOperation) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "provisioningOperation": operation.provisioning_operation,
        "provisioningState": operation.provisioning_state,
        "timestamp": timestamp(operation.ended_at or operation.started_at),
        "duration": duration(operation.started_at, operation.ended_at),
        "trackingId": operation.id,
        "targetResource": operation.target,
    }
    if operation.status_code:
        properties["statusCode"] = operation.status_code
    if operation.status_message is not None:
        properties["statusMessage"] = operation.status_message
    return {"id": f"{deployment.arm_id}/operations/{operation.operation_id}",
            "operationId": operation.operation_id, "properties": properties}


def validate_result(deployment_id: str, name: str, location: str | None, parameters: dict, mode: str,
                    template_hash: str, correlation_id: str, providers: list, dependencies: list,
                    validated: list[dict]) -> dict[str, Any]:
    """`DeploymentValidateResult` for a template that passed: what a deployment would hold, not yet run."""
    body: dict[str, Any] = {"id": deployment_id, "name": name, "type": DEPLOYMENT_TYPE}
    if location:
        body["location"] = location
    body["properties"] = {
        "templateHash": template_hash, "parameters": parameters, "mode": mode, "provisioningState": "Succeeded",
        "timestamp": timestamp(None), "duration": "PT0S", "correlationId": correlation_id, "providers": providers,
        "dependencies": dependencies, "validatedResources": validated,
    }
    return body
