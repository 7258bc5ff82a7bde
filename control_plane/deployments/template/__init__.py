"""The ARM template language: parse, validate and plan a deployment, with no I/O of its own.

The deployments REST API and the applier build on three calls; everything else here is internal.

``parse_template(text_or_dict) -> dict``
    Reads the template as az sends it (comments, trailing commas, raw newlines in strings, unquoted
    keys; docs/iac-deployments.md §2.2) and enforces the 4 MB limit. ``jsonc.loads`` is the same reader
    for a whole request body whose ``template`` key az leaves unquoted.

``plan(template, parameters, context) -> Plan``
    ``parameters`` is the deployment's ``properties.parameters`` (``{name: {"value": v}}``; a Key Vault
    ``{"reference": ...}`` goes to ``context.resolve_key_vault_reference``). ``context`` is a
    ``DeploymentContext``: subscription, tenant, deployment name, resource group (``None`` for a
    subscription-scope deployment, which then needs ``location``) and its location/tags, mode, the
    cloud metadata object for ``environment()``, the clock for ``utcNow()``, the evaluation time budget,
    and ``lookup_resource_group(sub, rg)`` for nested deployments aimed at another group.

``Plan``
    ``resources``: ``PlannedResource`` in dependency order (a resource comes after everything in its
    ``depends_on``); ``waves()`` groups them for concurrent application. Each has ``id`` (full ARM id),
    ``type``, ``name`` (``parent/child`` for children), ``api_version``, ``location``, ``scope`` (the id
    it is created under: group, subscription, or the resource an extension resource such as a role
    assignment or lock extends), ``subscription_id``/``resource_group``, ``symbolic_name`` (languageVersion
    2.0), ``copy_name``/``copy_index`` and ``body``: the PUT body (location, tags, sku, kind, identity,
    properties, ...) with every expression evaluated except those needing ``reference()``/``list*()``,
    which are ``Deferred`` objects. When the applier reaches a resource (its dependencies done) it calls
    ``resource.resolve(runtime)`` for the final body; ``resource.preview()`` shows deferred values as
    their expression text (what-if does the same). ``reference()`` and ``list*()`` targets that are
    resources of the template become implicit dependencies.
    ``existing``: the ``existing: true`` resources (read, never written).
    ``parameters``: the echo for the deployment body (``{"type": "String", "value": ...}``; secure
    parameters carry no value). ``dependencies()`` and ``providers()`` give those properties in ARM's shape.
    ``outputs(runtime)`` evaluates the outputs after the last resource (secure outputs carry no value).

    A ``Microsoft.Resources/deployments`` resource is a nested deployment: ``resource.nested`` is its own
    ``Plan`` when it could be planned up front, otherwise ``resource.plan_nested(runtime)`` plans it when
    reached (its parameters needed ``reference()``, or its resource group is created by this deployment).
    Inner expression scope evaluates the inner template on its own; outer scope evaluates it with the
    parent's parameters, variables and ``resourceGroup()``, as ARM does. Linked templates are not fetched.

``Runtime`` (supplied by the applier)
    ``reference(resource_id, api_version, full) -> dict``: the deployed resource's ``properties`` (or the
    whole resource when ``full``); for a nested deployment, its properties including ``outputs``.
    ``invoke_list(resource_id, action, api_version, body) -> Any``: ``POST {id}/{action}``, e.g.
    ``listCredentials``.

Errors are ``TemplateError(code, message)`` with ARM's code (``InvalidTemplate`` almost always;
``RequestContentTooLarge`` past 4 MB; ``InvalidRequestContent`` for a malformed parameter value;
``ResourceGroupNotFound`` for a nested deployment into a missing group) and ARM's sentence, including
line and position for malformed JSON. ``TemplateError.to_error()`` is the ``error`` object of a response.
Limits: 256 parameters, 256 variables, 64 outputs, 800 resources, copy count 0..800, 24,576 characters
per expression, expression nesting 64, user-function depth 16, nested deployments 10 deep, and a time
budget (``context.time_budget_seconds``) for each evaluation pass.
"""

from .errors import TemplateError
from .expressions import Runtime
from .jsonc import JObject, JsonParseError
from .planner import (
    Deferred,
    DeploymentContext,
    ExistingResource,
    Plan,
    PlannedResource,
    parse_template,
    plan,
)

__all__ = [
    "Deferred",
    "DeploymentContext",
    "ExistingResource",
    "JObject",
    "JsonParseError",
    "Plan",
    "PlannedResource",
    "Runtime",
    "TemplateError",
    "parse_template",
    "plan",
]
