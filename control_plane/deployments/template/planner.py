"""Template evaluation: parameters, variables, functions, resources, dependencies and outputs -> a Plan.

Planning is everything ARM can decide before touching a resource: parameter validation, variables,
copy expansion, conditions, names and ids, dependency order and nested templates. What only exists
once resources are deployed (`reference()`, `list*()`) is kept as `Deferred` values that the applier
resolves, through its `Runtime`, when it reaches the resource (and for outputs, after the last one).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import jsonc
from .errors import (
    INVALID_REQUEST_CONTENT,
    INVALID_TEMPLATE,
    KEY_VAULT_REFERENCE_FAILED,
    REQUEST_CONTENT_TOO_LARGE,
    TemplateError,
    validation_failed,
)
from .expressions import (
    MAX_FUNCTION_DEPTH,
    Evaluator,
    ExpressionError,
    Lambda,
    Literal,
    NeedsRuntime,
    Node,
    Runtime,
    Scope,
    is_expression,
    lookup,
    parse,
    static_calls,
    type_name,
    unescape,
)
from .functions import FUNCTIONS, deep_equal, provider_path, to_string

MAX_TEMPLATE_BYTES = 4 * 1024 * 1024
MAX_PARAMETERS = 256
MAX_VARIABLES = 256
MAX_OUTPUTS = 64
MAX_RESOURCES = 800
MAX_COPY_COUNT = 800
MAX_NESTED_DEPTH = 10
DEFAULT_TIME_BUDGET_SECONDS = 30.0

_TOP_LEVEL_KEYS = {"$schema", "contentversion", "languageversion", "apiprofile", "definitions", "parameters",
                   "variables", "functions", "resources", "outputs", "metadata", "imports", "extensions"}
_CONTROL_KEYS = {"condition", "type", "apiversion", "name", "copy", "dependson", "resources", "comments", "existing",
                 "scope", "subscriptionid", "resourcegroup", "metadata", "import"}
_PARAMETER_TYPES = {"string": (str,), "securestring": (str,), "int": (int,), "bool": (bool,), "object": (dict,),
                    "secureobject": (dict,), "array": (list,)}
_TYPE_DISPLAY = {"string": "String", "securestring": "SecureString", "int": "Int", "bool": "Bool",
                 "object": "Object", "secureobject": "SecureObject", "array": "Array"}
_EXPECTED = {"string": "String, Uri", "securestring": "String, Uri", "int": "Integer", "bool": "Boolean",
             "object": "Object", "secureobject": "Object", "array": "Array"}
_DEPLOYMENTS = "microsoft.resources/deployments"
_DEFAULT_ENVIRONMENT = {"name": "AzureCloud", "suffixes": {"acrLoginServer": ".azurecr.io"}}


# --- public data ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentContext:
    """Where and as whom the deployment runs; `resource_group=None` means a subscription-scope deployment."""

    subscription_id: str
    tenant_id: str
    deployment_name: str
    resource_group: str | None = None
    resource_group_location: str | None = None
    resource_group_tags: Mapping[str, str] | None = None
    resource_group_managed_by: str | None = None
    location: str | None = None
    subscription_display_name: str = ""
    mode: str = "Incremental"
    environment: Mapping[str, Any] | None = None
    now: datetime | None = None
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS
    lookup_resource_group: Callable[[str, str], Mapping[str, Any] | None] | None = None
    resolve_key_vault_reference: Callable[[Mapping[str, Any]], Any] | None = None


@dataclass(frozen=True, eq=False)
class Deferred:
    """A value that needs `reference()`/`list*()`; `text` is the expression, which what-if shows as is."""

    text: str
    node: Node = field(repr=False)
    scope: Scope = field(repr=False)
    template: _Template = field(repr=False)

    def resolve(self, runtime: Runtime) -> Any:
        return self.template.run_deferred(self, runtime)


@dataclass(frozen=True)
class ExistingResource:
    """An `existing: true` declaration: read (via reference) but never written."""

    id: str
    type: str
    name: str
    api_version: str | None
    symbolic_name: str | None


@dataclass(eq=False)
class PlannedResource:
    """One concrete resource write, in the shape of its PUT: `body` holds location/tags/sku/properties/..."""

    id: str
    type: str
    name: str
    api_version: str
    location: str | None
    body: dict[str, Any]
    depends_on: list[str]
    subscription_id: str
    resource_group: str | None
    scope: str
    symbolic_name: str | None = None
    copy_name: str | None = None
    copy_index: int | None = None
    nested: Plan | None = None
    _nested_planner: Callable[[dict[str, Any]], Plan] | None = field(default=None, repr=False)

    @property
    def deferred(self) -> bool:
        """True when some of the body can only be evaluated at deployment time."""
        return _contains_deferred(self.body)

    @property
    def is_deployment(self) -> bool:
        return self.type.lower() == _DEPLOYMENTS

    def resolve(self, runtime: Runtime) -> dict[str, Any]:
        """The body with every deferred value evaluated through `runtime` (call when dependencies are done)."""
        return _resolve_tree(self.body, runtime)

    def preview(self) -> dict[str, Any]:
        """The body with deferred values shown as their expression text, as ARM's what-if does."""
        return _preview_tree(self.body)

    def plan_nested(self, runtime: Runtime | None = None) -> Plan:
        """The nested deployment's own Plan; parameters that needed `reference()` are evaluated now."""
        if self.nested is not None:
            return self.nested
        if self._nested_planner is None:
            raise validation_failed(f"The nested deployment '{self.name}' has no inline 'template'; linked templates "
                                    "(templateLink) are not supported by this service.")
        if self.deferred and runtime is None:
            raise validation_failed(f"The nested deployment '{self.name}' needs deployment-time values; plan it "
                                    "when the applier reaches it.")
        body = self.resolve(runtime) if runtime is not None else self.body
        return self._nested_planner(body)


@dataclass(eq=False)
class Plan:
    """The ordered (dependencies first), dependency-annotated resources of one deployment, and its outputs."""

    resources: list[PlannedResource]
    existing: list[ExistingResource]
    parameters: dict[str, dict[str, Any]]
    template: dict[str, Any] = field(repr=False)
    _host: _Template = field(repr=False)

    def find(self, resource_id: str) -> PlannedResource | None:
        lowered = resource_id.lower()
        return next((r for r in self.resources if r.id.lower() == lowered), None)

    def waves(self) -> list[list[PlannedResource]]:
        """Groups that can be applied concurrently: every resource's dependencies are in earlier groups."""
        level: dict[str, int] = {}
        for resource in self.resources:
            level[resource.id.lower()] = 1 + max((level[d.lower()] for d in resource.depends_on), default=-1)
        waves: list[list[PlannedResource]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for resource in self.resources:
            waves[level[resource.id.lower()]].append(resource)
        return waves

    def outputs(self, runtime: Runtime) -> dict[str, dict[str, Any]]:
        """`{name: {"type": "String", "value": ...}}`; secure outputs carry no value."""
        return self._host.evaluate_outputs(runtime)

    def dependencies(self) -> list[dict[str, Any]]:
        """ARM's `properties.dependencies` of a deployment."""
        by_id = {r.id.lower(): r for r in self.resources}
        out = []
        for resource in self.resources:
            if resource.depends_on:
                out.append({"id": resource.id, "resourceType": resource.type, "resourceName": resource.name,
                            "dependsOn": [{"id": by_id[d.lower()].id, "resourceType": by_id[d.lower()].type,
                                           "resourceName": by_id[d.lower()].name} for d in resource.depends_on]})
        return out

    def providers(self) -> list[dict[str, Any]]:
        """ARM's `properties.providers`: namespaces, types and locations the deployment touches."""
        namespaces: dict[str, dict[str, list[str]]] = {}
        for resource in self.resources:
            namespace, _, resource_type = resource.type.partition("/")
            locations = namespaces.setdefault(namespace, {}).setdefault(resource_type, [])
            if resource.location and resource.location not in locations:
                locations.append(resource.location)
        return [{"namespace": ns,
                 "resourceTypes": [{"resourceType": t, "locations": locs} for t, locs in types.items()]}
                for ns, types in namespaces.items()]


# --- entry points -----------------------------------------------------------------------------------------------


def parse_template(template: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """Parse template text leniently (as az sends it) and enforce ARM's 4 MB size limit."""
    if isinstance(template, bytes):
        template = template.decode("utf-8-sig")
    if isinstance(template, str):
        size = len(template.encode("utf-8"))
    else:
        size = len(json.dumps(template, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_TEMPLATE_BYTES:
        raise TemplateError(REQUEST_CONTENT_TOO_LARGE, "The request content size exceeds the maximum size of 4 MB.")
    parsed = jsonc.loads(template) if isinstance(template, str) else template
    if not isinstance(parsed, dict):
        raise TemplateError(INVALID_TEMPLATE, "Deployment template parse failed: 'The template must be a JSON "
                                              "object.'.")
    return dict(parsed) if not isinstance(parsed, jsonc.JObject) else parsed


def plan(template: str | bytes | Mapping[str, Any], parameters: Mapping[str, Any] | None,
         context: DeploymentContext) -> Plan:
    """Validate and expand a template into a Plan; raises TemplateError with ARM's code and message."""
    parsed = parse_template(template)
    deadline = time.monotonic() + context.time_budget_seconds
    return _guarded(context, lambda: _Template(parsed, parameters or {}, context, deadline).build())


def _guarded(context: DeploymentContext, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except TimeoutError:
        raise validation_failed(f"The template evaluation exceeded the time limit of "
                                f"'{context.time_budget_seconds:g}' seconds.") from None
    except RecursionError:
        raise validation_failed("The template is nested or recursive beyond the supported depth.") from None


# --- helpers over evaluated trees -------------------------------------------------------------------------------


def _contains_deferred(value: Any) -> bool:
    if isinstance(value, Deferred):
        return True
    if isinstance(value, dict):
        return any(_contains_deferred(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_deferred(v) for v in value)
    return False


def _resolve_tree(value: Any, runtime: Runtime) -> Any:
    if isinstance(value, Deferred):
        return value.resolve(runtime)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            resolved = _resolve_tree(item, runtime)
            if resolved is not None:
                out[key] = resolved
        return out
    if isinstance(value, list):
        return [_resolve_tree(v, runtime) for v in value]
    return value


def _preview_tree(value: Any) -> Any:
    if isinstance(value, Deferred):
        return value.text
    if isinstance(value, dict):
        return {k: _preview_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_preview_tree(v) for v in value]
    return value


def _normalize_id(resource_id: str) -> str:
    """Lower-case id, with `/providers/Microsoft.Resources/resourceGroups/x` written as ARM stores groups."""
    lowered = resource_id.lower().rstrip("/")
    return lowered.replace("/providers/microsoft.resources/resourcegroups/", "/resourcegroups/")


def _where(obj: Any) -> str:
    line = getattr(obj, "line", 0)
    return f" at line '{line}' and column '{obj.column}'" if line else ""


def _get(obj: Mapping[str, Any], key: str) -> Any:
    return lookup(obj, key)[1]


def _is_copy_loops(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(loop, dict) and lookup(loop, "name")[0] and lookup(loop, "input")[0] for loop in value)


def _static_names(value: Any, function: str) -> set[str]:
    """Names passed as literals to `function` anywhere in a JSON value (for ordering and dependencies)."""
    names: set[str] = set()
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
        elif is_expression(current):
            try:
                calls = static_calls(parse(current), frozenset({function}))
            except ExpressionError:
                continue
            names.update(c.args[0].value for c in calls
                         if c.args and isinstance(c.args[0], Literal) and isinstance(c.args[0].value, str))
    return names


def _order(names: list[str], deps: Callable[[str], set[str]], kind: str) -> list[str]:
    """Dependency order of template parameters or variables, refusing cycles (keeps evaluation shallow)."""
    lowered = {n.lower(): n for n in names}
    state: dict[str, int] = {}
    out: list[str] = []
    for root in names:
        stack: list[tuple[str, Iterator[str]]] = []
        if state.get(root.lower()):
            continue
        state[root.lower()] = 1
        stack.append((root, iter(sorted(deps(root)))))
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[name.lower()] = 2
                out.append(name)
                continue
            real = lowered.get(child.lower())
            if real is None:
                continue
            if state.get(real.lower()) == 1:
                path = [n for n, _ in stack]
                cycle = [*path[path.index(real):], real] if real in path else [name, real]
                raise validation_failed(f"The template {kind} '{real}' is not valid: circular reference detected: "
                                        + " -> ".join(f"'{n}'" for n in cycle) + ".")
            if not state.get(real.lower()):
                state[real.lower()] = 1
                stack.append((real, iter(sorted(deps(real)))))
    return out


# --- the template -------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Instance:
    raw: Mapping[str, Any]
    symbolic: str | None
    scope: Scope
    parent: _Instance | None
    order: int
    copy_name: str | None = None
    copy_index: int | None = None
    copy_mode: str = "parallel"
    batch_size: int = 0
    active: bool = True
    existing: bool = False
    type: str = ""
    name: str = ""
    id: str = ""
    api_version: str | None = None
    subscription_id: str = ""
    resource_group: str | None = None
    scope_id: str = ""
    explicit_scope: bool = False
    planned: PlannedResource | None = None
    references: set[str] = field(default_factory=set)


class _Template:
    """One template being planned: implements the expression Host and holds every evaluated section."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, Any], context: DeploymentContext,
                 deadline: float, parent: _Template | None = None, base_scope: Scope | None = None,
                 depth: int = 0) -> None:
        self.raw = template
        self.context = context
        self.deadline = deadline
        self.parent = parent  # set only for nested templates with outer expression scope
        self.base_scope = base_scope or Scope()
        self.depth = depth
        self.moment = context.now or (parent.moment if parent else datetime.now(UTC))
        self.ev = Evaluator(self, FUNCTIONS, deadline)
        self._check_structure()
        self.symbolic = str(_get(template, "languageVersion") or "").startswith("2")
        self.definitions: Mapping[str, Any] = _get(template, "definitions") or {}
        self.param_defs: Mapping[str, Any] = {} if parent else (_get(template, "parameters") or {})
        self.var_defs: Mapping[str, Any] = {} if parent else (_get(template, "variables") or {})
        self.output_defs: Mapping[str, Any] = _get(template, "outputs") or {}
        self.provided = parameters
        self.param_values: dict[str, Any] = {}
        self.var_values: dict[str, Any] = {}
        self.secure_names: set[str] = set()
        self._resolving: set[str] = set()
        self.udfs = self._collect_functions()
        self.instances: list[_Instance] = []
        self.by_symbol: dict[str, list[_Instance]] = {}
        if parent is not None:
            self.subscription_id: str = parent.subscription_id
            self.resource_group_name: str | None = parent.resource_group_name
        else:
            self.subscription_id = context.subscription_id
            self.resource_group_name = context.resource_group

    # -- structure and limits --

    def _check_structure(self) -> None:
        for key in self.raw:
            if key.lower() not in _TOP_LEVEL_KEYS:
                raise TemplateError(INVALID_TEMPLATE, f"Deployment template parse failed: 'Could not find member "
                                                      f"'{key}' on object of type 'Template'. Path '{key}'"
                                                      f"{_where(self.raw)}.'.")
        if not lookup(self.raw, "resources")[0]:
            raise validation_failed("Required property 'resources' not found in JSON. Path ''.")
        for section, kinds in (("parameters", dict), ("variables", dict), ("outputs", dict),
                               ("definitions", dict), ("functions", list)):
            value = _get(self.raw, section)
            if value is not None and not isinstance(value, kinds):
                raise validation_failed(f"The template section '{section}' must be a JSON "
                                        f"{'object' if kinds is dict else 'array'}.")
        resources = _get(self.raw, "resources")
        language = str(_get(self.raw, "languageVersion") or "")
        if isinstance(resources, dict) and not language.startswith("2"):
            raise validation_failed("The template 'resources' must be an array unless 'languageVersion' is '2.0'.")
        if not isinstance(resources, (list, dict)):
            raise validation_failed("The template 'resources' must be a JSON array (or an object with "
                                    "'languageVersion' '2.0').")
        variables = _get(self.raw, "variables") or {}
        loops = _get(variables, "copy") if isinstance(variables, dict) else None
        variable_count = len(variables) - (1 if loops is not None else 0) + (len(loops) if _is_copy_loops(loops)
                                                                              else 0)
        for section, count, limit in (("parameters", len(_get(self.raw, "parameters") or {}), MAX_PARAMETERS),
                                      ("variables", variable_count, MAX_VARIABLES),
                                      ("outputs", len(_get(self.raw, "outputs") or {}), MAX_OUTPUTS)):
            if count > limit:
                raise validation_failed(f"The number of template {section} '{count}' exceeds the limit of "
                                        f"'{limit}'. Please see https://aka.ms/arm-template-limits for usage details.")

    def _collect_functions(self) -> dict[str, Mapping[str, Any]]:
        udfs: dict[str, Mapping[str, Any]] = {}
        for group in _get(self.raw, "functions") or []:
            namespace = _get(group, "namespace") if isinstance(group, dict) else None
            members = _get(group, "members") if isinstance(group, dict) else None
            if not isinstance(namespace, str) or not isinstance(members, dict):
                raise validation_failed("Each entry of the template 'functions' needs a 'namespace' and 'members'.")
            for name, definition in members.items():
                if not isinstance(definition, dict) or not isinstance(_get(definition, "output"), dict):
                    raise validation_failed(f"The template function '{namespace}.{name}' needs an 'output'.")
                udfs[f"{namespace}.{name}".lower()] = definition
        return udfs

    # -- errors --

    def invalid(self, message: str) -> TemplateError:
        return validation_failed(self.redact(message))

    def redact(self, message: str) -> str:
        """Secure parameter values never appear in messages."""
        for name in self.secure_names:
            value = self.param_values.get(name)
            for secret in ([value] if isinstance(value, str) else
                           [v for v in value.values() if isinstance(v, str)] if isinstance(value, dict) else []):
                if len(secret) >= 3:
                    message = message.replace(secret, "***")
        return message

    @contextmanager
    def located(self, what: str, obj: Any) -> Iterator[None]:
        """Turn an expression failure into ARM's 'The template {what} at line .. is not valid: ..'."""
        try:
            yield
        except ExpressionError as exc:
            raise self.invalid(f"The template {what}{_where(obj)} is not valid: {exc}") from None
        except NeedsRuntime:
            raise self.invalid(f"The template {what}{_where(obj)} is not valid: The template function 'reference' or "
                               "'list' is not expected at this location; its value is only known at deployment time. "
                               "Please see https://aka.ms/arm-functions for usage details.") from None

    # -- evaluation of JSON values --

    def evaluate(self, value: Any, scope: Scope, ev: Evaluator | None = None, defer: list[Deferred] | None = None,
                 drop_nulls: bool = False, copy_ok: bool = False) -> Any:
        ev = ev or self.ev
        if isinstance(value, str):
            if not is_expression(value):
                return unescape(value)
            node = parse(value)
            try:
                result = ev.evaluate(node, scope)
            except NeedsRuntime:
                if defer is None:
                    raise
                deferred = Deferred(value, node, scope, self)
                defer.append(deferred)
                return deferred
            if isinstance(result, Lambda):
                raise ExpressionError("A lambda expression can only be passed directly to a function that takes one.")
            return result
        if isinstance(value, list):
            return [self.evaluate(v, scope, ev, defer, drop_nulls, copy_ok) for v in value]
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            loops = _get(value, "copy") if copy_ok else None
            if _is_copy_loops(loops):
                for loop in loops:
                    name = _get(loop, "name")
                    count = self.copy_count(_get(loop, "count"), scope, f"property copy '{name}'")
                    out[name] = [self.evaluate(_get(loop, "input"), scope.with_copy(name, i), ev, defer, drop_nulls,
                                               copy_ok) for i in range(count)]
            for key, item in value.items():
                if loops is not None and _is_copy_loops(loops) and key.lower() == "copy":
                    continue
                result = self.evaluate(item, scope, ev, defer, drop_nulls, copy_ok)
                if result is None and drop_nulls:
                    continue
                out[self._property_name(key, scope, ev)] = result
            return out
        return value

    def _property_name(self, key: str, scope: Scope, ev: Evaluator) -> str:
        """ARM evaluates expressions in property names too (Bicep writes `userAssignedIdentities` keyed by
        `[resourceId(...)]`); the name must come out a string, known before deployment."""
        if not is_expression(key):
            return key
        name = self.evaluate(key, scope, ev)
        if not isinstance(name, str):
            raise ExpressionError(f"The property name '{key[:200]}' must evaluate to a string; it evaluated to a value "
                                  f"of type '{type_name(name)}'.")
        return name

    def copy_count(self, raw: Any, scope: Scope, what: str) -> int:
        count = self.evaluate(raw, scope)
        if isinstance(count, float) and count.is_integer():
            count = int(count)
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COPY_COUNT:
            raise ExpressionError(f"The copy count of {what} must be a non-negative integer value and cannot exceed "
                                  f"'{MAX_COPY_COUNT}'; got '{to_string(count)}'. Please see https://aka.ms/arm-copy "
                                  "for usage details.")
        return count

    def run_deferred(self, deferred: Deferred, runtime: Runtime) -> Any:
        ev = Evaluator(self, FUNCTIONS, time.monotonic() + self.context.time_budget_seconds, runtime)

        def run() -> Any:
            with self.located("expression", None):
                result = ev.evaluate(deferred.node, deferred.scope)
                if isinstance(result, Lambda):
                    raise ExpressionError("A lambda expression can only be passed directly to a function that takes "
                                          "one.")
                return result

        return _guarded(self.context, run)

    # -- Host: parameters --

    def parameter(self, name: str, scope: Scope) -> Any:
        if scope.function_args is not None:
            found, value = lookup(scope.function_args, name)
            if not found:
                raise ExpressionError(f"The function parameter '{name}' is not defined. Please see "
                                      "https://aka.ms/arm-functions for usage details.")
            return value
        if self.parent is not None:
            return self.parent.parameter(name, scope)
        if not lookup(self.param_defs, name)[0]:
            raise ExpressionError(f"The template parameter '{name}' is not found. Please see "
                                  "https://aka.ms/arm-template/#parameters for usage details.")
        key = next(k for k in self.param_defs if k.lower() == name.lower())
        if key not in self.param_values:
            self.resolve_parameter(key)
        return self.param_values[key]

    def parameter_definition(self, name: str) -> dict[str, Any]:
        definition = self.param_defs[name]
        if not isinstance(definition, dict):
            raise self.invalid(f"The template parameter '{name}' must be a JSON object.")
        return self.expand_ref(definition, f"parameter '{name}'")

    def expand_ref(self, definition: dict[str, Any], what: str, depth: int = 0) -> dict[str, Any]:
        ref = _get(definition, "$ref")
        if not isinstance(ref, str):
            return definition if isinstance(definition, dict) else dict(definition)
        target_name = ref.removeprefix("#/definitions/")
        found, target = lookup(self.definitions, target_name)
        if not ref.startswith("#/definitions/") or not found or not isinstance(target, dict) or depth > 32:
            raise self.invalid(f"The template {what} refers to the type '{ref}', which is not defined in the "
                               "template 'definitions'.")
        merged = jsonc.JObject(self.expand_ref(target, what, depth + 1))
        merged.update({k: v for k, v in definition.items() if k != "$ref"})
        merged.line, merged.column = getattr(definition, "line", 0), getattr(definition, "column", 0)
        return merged

    def resolve_parameter(self, name: str) -> None:
        definition = self.parameter_definition(name)
        declared = str(_get(definition, "type") or "").lower()
        if declared not in _PARAMETER_TYPES:
            raise self.invalid(f"The template parameter '{name}'{_where(definition)} has the type "
                               f"'{_get(definition, 'type')}', which is not one of 'string, securestring, int, bool, "
                               "object, secureObject, array'.")
        if declared.startswith("secure"):
            self.secure_names.add(name)
        found, supplied = lookup(self.provided, name)
        nullable = _get(definition, "nullable") is True
        if found:
            value = self.provided_value(name, supplied)
            if value is None and not nullable and lookup(definition, "defaultValue")[0]:
                found = False
        if not found:
            if lookup(definition, "defaultValue")[0]:
                if name in self._resolving:
                    raise self.invalid(f"The template parameter '{name}' is not valid: its default value refers to "
                                       "itself.")
                self._resolving.add(name)
                try:
                    with self.located(f"parameter '{name}'", definition):
                        value = self.evaluate(_get(definition, "defaultValue"), Scope(section="parameters"))
                finally:
                    self._resolving.discard(name)
            elif nullable:
                value = None
            else:
                raise self.invalid(f"The value for the template parameter '{name}'{_where(definition)} is not "
                                   "provided. Please see https://aka.ms/arm-create-parameter-file for usage details.")
        self.param_values[name] = self.check_parameter(name, definition, declared, value)

    def provided_value(self, name: str, supplied: Any) -> Any:
        if isinstance(supplied, dict) and lookup(supplied, "value")[0]:
            return _get(supplied, "value")
        if isinstance(supplied, dict) and lookup(supplied, "reference")[0]:
            resolver = self.context.resolve_key_vault_reference
            if resolver is None:
                raise TemplateError(KEY_VAULT_REFERENCE_FAILED, f"The Key Vault reference of the template parameter "
                                                                f"'{name}' cannot be resolved by this service.")
            return resolver(_get(supplied, "reference"))
        raise TemplateError(INVALID_REQUEST_CONTENT, f"The value of deployment parameter '{name}' is not valid: it "
                                                     "must be an object with a 'value' or a 'reference' property.")

    def check_parameter(self, name: str, definition: Mapping[str, Any], declared: str, value: Any) -> Any:
        where = _where(definition)
        secure = declared.startswith("secure")
        if value is None and _get(definition, "nullable") is True:
            return None
        if isinstance(value, float) and declared == "int" and value.is_integer():
            value = int(value)
        kinds = _PARAMETER_TYPES[declared]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.invalid(f"The provided value for the template parameter '{name}'{where} is not valid. Template "
                               f"parameter JToken type is not valid. Expected '{_EXPECTED[declared]}'. Actual "
                               f"'{type_name(value)}'. Please see https://aka.ms/resource-manager-parameter-files for "
                               "usage details.")
        allowed = _get(definition, "allowedValues")
        if isinstance(allowed, list):
            candidates = value if declared == "array" else [value]

            def permitted(item: Any) -> bool:
                return any(deep_equal(item, a) or (isinstance(item, str) and isinstance(a, str)
                                                   and item.lower() == a.lower()) for a in allowed)

            if not all(permitted(item) for item in candidates):
                shown = "" if secure else f" '{to_string(value)}'"
                raise self.invalid(f"The provided value{shown} for the template parameter '{name}'{where} is not "
                                   "valid. The parameter value is not part of the allowed value(s): "
                                   f"'{','.join(to_string(a) for a in allowed)}'. Please see "
                                   "https://aka.ms/arm-syntax-parameters for usage details.")
        for key, test, relation in (("minValue", lambda v, n: v >= n, "greater than or equal to"),
                                    ("maxValue", lambda v, n: v <= n, "less than or equal to")):
            bound = _get(definition, key)
            if isinstance(bound, int) and isinstance(value, int) and not test(value, bound):
                raise self.invalid(f"The provided value for the template parameter '{name}'{where} is not valid. The "
                                   f"value must be {relation} '{bound}'. Please see "
                                   "https://aka.ms/arm-syntax-parameters for usage details.")
        for key, test, relation in (("minLength", lambda v, n: len(v) >= n, "greater than or equal to"),
                                    ("maxLength", lambda v, n: len(v) <= n, "less than or equal to")):
            bound = _get(definition, key)
            if isinstance(bound, int) and isinstance(value, (str, list)) and not test(value, bound):
                raise self.invalid(f"The provided value for the template parameter '{name}'{where} is not valid. "
                                   f"Length of the value should be {relation} '{bound}'. Please see "
                                   "https://aka.ms/arm-syntax-parameters for usage details.")
        return value

    def resolve_parameters(self) -> None:
        names = list(self.param_defs)
        supported = {n.lower() for n in names}
        unknown = [n for n in self.provided if n.lower() not in supported and not n.startswith("$")]
        if unknown:
            raise self.invalid(f"The template parameters '{', '.join(unknown)}' in the parameters file are not valid; "
                               "they are not present in the original template and can therefore not be provided at "
                               f"deployment time. The only supported parameters for this template are "
                               f"'{', '.join(names)}'. Please see https://aka.ms/arm-pass-parameter-values for usage "
                               "details.")
        order = _order(names, lambda n: _static_names(lookup(self.param_defs[n], "defaultValue")[1]
                                                      if isinstance(self.param_defs[n], dict) else None,
                                                      "parameters"), "parameter")
        for name in order:
            if name not in self.param_values:
                self.resolve_parameter(name)

    def echo_parameters(self) -> dict[str, dict[str, Any]]:
        """Parameters as a deployment echoes them: capitalised type, and no value for secure ones."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.param_defs:
            declared = str(_get(self.parameter_definition(name), "type") or "").lower()
            entry: dict[str, Any] = {"type": _TYPE_DISPLAY.get(declared, declared)}
            if name not in self.secure_names:
                entry["value"] = self.param_values.get(name)
            out[name] = entry
        return out

    # -- Host: variables and functions --

    def variable(self, name: str, scope: Scope) -> Any:
        if scope.section in ("parameters", "functions"):
            raise ExpressionError("The template function 'variables' is not expected at this location. Please see "
                                  "https://aka.ms/arm-functions for usage details.")
        if self.parent is not None:
            return self.parent.variable(name, scope)
        key = self.variable_key(name)
        if key not in self.var_values:
            self.resolve_variable(key)
        return self.var_values[key]

    def variable_key(self, name: str) -> str:
        for key in self.variable_names():
            if key.lower() == name.lower():
                return key
        raise ExpressionError(f"The template variable '{name}' is not found. Please see "
                              "https://aka.ms/arm-template/#variables for usage details.")

    def variable_names(self) -> list[str]:
        names = [k for k in self.var_defs if k.lower() != "copy"]
        loops = _get(self.var_defs, "copy")
        if loops is not None:
            if not _is_copy_loops(loops):
                raise self.invalid("The template variable 'copy' must be an array of objects with 'name', 'count' and "
                                   "'input'.")
            names.extend(_get(loop, "name") for loop in loops)
        return names

    def variable_source(self, name: str) -> tuple[Any, Mapping[str, Any] | None]:
        for loop in _get(self.var_defs, "copy") or []:
            if _get(loop, "name") == name:
                return None, loop
        return self.var_defs[name], None

    def resolve_variable(self, name: str) -> None:
        if name in self._resolving:
            raise self.invalid(f"The template variable '{name}' is not valid: circular reference detected.")
        self._resolving.add(name)
        try:
            raw, loop = self.variable_source(name)
            scope = Scope(section="variables")
            with self.located(f"variable '{name}'", self.var_defs):
                if loop is not None:
                    count = self.copy_count(_get(loop, "count"), scope, f"variable '{name}'")
                    value = [self.evaluate(_get(loop, "input"), scope.with_copy(name, i), copy_ok=True)
                             for i in range(count)]
                else:
                    value = self.evaluate(raw, scope, copy_ok=True)
            self.var_values[name] = value
        finally:
            self._resolving.discard(name)

    def resolve_variables(self) -> None:
        names = self.variable_names()

        def deps(name: str) -> set[str]:
            raw, loop = self.variable_source(name)
            return _static_names(loop if loop is not None else raw, "variables")

        for name in _order(names, deps, "variable"):
            if name not in self.var_values:
                self.resolve_variable(name)

    def user_function(self, name: str) -> Callable[[Evaluator, Scope, list[Any]], Any]:
        definition = self.udfs.get(name.lower())
        if definition is None:
            if self.parent is not None:
                return self.parent.user_function(name)
            raise ExpressionError(f"The template function '{name}' is not valid. Please see "
                                  "https://aka.ms/arm-functions for usage details.")

        def call(ev: Evaluator, scope: Scope, args: list[Any]) -> Any:
            if scope.function_depth >= MAX_FUNCTION_DEPTH:
                raise ExpressionError(f"The template function '{name}' exceeds the maximum function call depth of "
                                      f"'{MAX_FUNCTION_DEPTH}'.")
            params = _get(definition, "parameters") or []
            if len(args) != len(params):
                raise ExpressionError(f"Unable to evaluate template language function '{name}': function requires "
                                      f"'{len(params)}' argument(s) while '{len(args)}' were provided.")
            bound: dict[str, Any] = {}
            for spec, value in zip(params, args, strict=True):
                declared = str(_get(spec, "type") or "").lower()
                kinds = _PARAMETER_TYPES.get(declared)
                if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
                    raise ExpressionError(f"The template function '{name}' expects its parameter "
                                          f"'{_get(spec, 'name')}' to be of type '{_EXPECTED[declared]}'; got "
                                          f"'{type_name(value)}'.")
                bound[_get(spec, "name")] = value
            inner = Scope(function_args=bound, function_depth=scope.function_depth + 1, section="functions")
            return self.evaluate(_get(_get(definition, "output"), "value"), inner, ev)

        return call

    # -- Host: deployment objects --

    def now(self) -> datetime:
        return self.moment

    def resource_group_object(self) -> dict[str, Any]:
        if self.parent is not None:
            return self.parent.resource_group_object()
        ctx = self.context
        if ctx.resource_group is None:
            raise ExpressionError("The template function 'resourceGroup' is not expected at this location: the "
                                  "deployment is at subscription scope. Please see https://aka.ms/arm-functions for "
                                  "usage details.")
        group: dict[str, Any] = {"id": f"/subscriptions/{ctx.subscription_id}/resourceGroups/{ctx.resource_group}",
                                 "name": ctx.resource_group, "type": "Microsoft.Resources/resourceGroups",
                                 "location": ctx.resource_group_location, "tags": dict(ctx.resource_group_tags or {}),
                                 "properties": {"provisioningState": "Succeeded"}}
        if ctx.resource_group_managed_by:
            group["managedBy"] = ctx.resource_group_managed_by
        return group

    def subscription_object(self) -> dict[str, Any]:
        ctx = self.parent.context if self.parent else self.context
        return {"id": f"/subscriptions/{ctx.subscription_id}", "subscriptionId": ctx.subscription_id,
                "tenantId": ctx.tenant_id, "displayName": ctx.subscription_display_name}

    def tenant_object(self) -> dict[str, Any]:
        return {"id": f"/tenants/{self.context.tenant_id}", "tenantId": self.context.tenant_id}

    def deployment_object(self) -> dict[str, Any]:
        if self.parent is not None:
            return self.parent.deployment_object()
        ctx = self.context
        parameters = {n: ({"value": self.param_values[n]} if n not in self.secure_names else {})
                      for n in self.param_values}
        template = {k: v for k, v in self.raw.items() if k.lower() in ("$schema", "contentversion", "languageversion",
                                                                        "metadata")}
        out: dict[str, Any] = {"name": ctx.deployment_name,
                               "properties": {"template": template, "parameters": parameters, "mode": ctx.mode,
                                              "provisioningState": "Accepted"}}
        if ctx.resource_group is None and ctx.location:
            out["location"] = ctx.location
        return out

    def environment_object(self) -> dict[str, Any]:
        return dict(self.context.environment or _DEFAULT_ENVIRONMENT)

    # -- Host: resources --

    def resolve_reference(self, target: str) -> tuple[str, str | None]:
        instance = self.find_instance(target)
        if instance is not None:
            return instance.id, instance.api_version
        if target.startswith("/"):
            return target, None
        segments = target.strip("/").split("/")
        if len(segments) >= 3 and "." in segments[0] and len(segments) % 2 == 1:
            return f"{self.base_id(self.subscription_id, self.resource_group_name)}/providers/{target.strip('/')}", None
        if self.parent is not None:
            return self.parent.resolve_reference(target)
        raise ExpressionError(f"The template reference '{target}' is not valid: could not find template resource or "
                              "resource copy with this name. Please see https://aka.ms/arm-function-reference for "
                              "usage details.")

    def find_instance(self, target: str) -> _Instance | None:
        if self.symbolic:
            found = self.by_symbol.get(target)
            if found is None:
                symbol, _, rest = target.partition("[")
                members = self.by_symbol.get(symbol)
                if members and rest.endswith("]") and rest[:-1].isdigit():
                    position = int(rest[:-1])
                    found = [m for m in members if m.copy_index == position]
            if found and len(found) == 1:
                return found[0]
        lowered = target.lower()
        if target.startswith("/"):
            return self.instance_by_id(target)
        if "/" not in target.strip("/") or not self.symbolic:
            matches = [i for i in self.instances if i.name.lower() == lowered and i.active]
            if len(matches) == 1:
                return matches[0]
        return None

    def resource_info(self, symbolic_name: str) -> dict[str, Any]:
        instance = self.find_instance(symbolic_name)
        if instance is None:
            raise ExpressionError(f"The template function 'resourceInfo' refers to '{symbolic_name}', which is not a "
                                  "resource of this template.")
        return {"id": instance.id, "name": instance.name, "type": instance.type, "apiVersion": instance.api_version}

    def base_id(self, subscription: str, group: str | None) -> str:
        return f"/subscriptions/{subscription}" + (f"/resourceGroups/{group}" if group else "")

    # -- resources: pass 1, expansion and identity --

    def declarations(self) -> list[tuple[str | None, Mapping[str, Any]]]:
        resources = _get(self.raw, "resources")
        items = list(resources.items()) if isinstance(resources, dict) else [(None, r) for r in resources]
        for symbol, raw in items:
            if not isinstance(raw, dict):
                raise self.invalid(f"The template resource '{symbol or raw}' must be a JSON object.")
        return items

    def expand(self) -> None:
        for symbol, raw in self.declarations():
            self.expand_declaration(raw, symbol, None, self.base_scope)
        active = [i for i in self.instances if i.active and not i.existing]
        if len(active) > MAX_RESOURCES:
            raise self.invalid(f"The number of template resources limit exceeded. Limit: '{MAX_RESOURCES}' and "
                               f"actual: '{len(active)}'. Please see https://aka.ms/arm-template-limits for usage "
                               "details.")
        seen: dict[str, _Instance] = {}
        for instance in active:
            key = instance.id.lower()
            if key in seen:
                raise self.invalid(f"The resource '{instance.id}'{_where(instance.raw)} is defined multiple times in a "
                                   "template. Please see https://aka.ms/arm-template/#resources for usage details.")
            seen[key] = instance

    def expand_declaration(self, raw: Mapping[str, Any], symbol: str | None, parent: _Instance | None,
                           base: Scope) -> None:
        label = f"resource '{symbol or _get(raw, 'name')}'"
        copy = _get(raw, "copy")
        positions: list[int | None] = [None]
        copy_name, mode, batch = None, "parallel", 0
        with self.located(label, raw):
            if copy is not None:
                if not isinstance(copy, dict) or not isinstance(_get(copy, "name"), str):
                    raise ExpressionError("The resource 'copy' property must be an object with a 'name' and a "
                                          "'count'.")
                copy_name = _get(copy, "name")
                positions = list(range(self.copy_count(_get(copy, "count"), base, f"'{copy_name}'")))
                mode = str(self.evaluate(_get(copy, "mode") or "parallel", base)).lower()
                if mode not in ("serial", "parallel"):
                    raise ExpressionError(f"The copy mode '{mode}' is not valid; expected 'serial' or 'parallel'.")
                batch = self.evaluate(_get(copy, "batchSize"), base) or (1 if mode == "serial" else 0)
                if not isinstance(batch, int) or batch < 0 or (mode == "serial" and not 1 <= batch <= MAX_COPY_COUNT):
                    raise ExpressionError(f"The copy batchSize '{to_string(batch)}' is not valid; it must be an "
                                          f"integer between 1 and {MAX_COPY_COUNT}.")
        for position in positions:
            scope = base if position is None else base.with_copy(copy_name or "", position)
            instance = _Instance(raw, symbol, scope, parent, len(self.instances), copy_name, position, mode, batch)
            instance.existing = _get(raw, "existing") is True
            with self.located(label, raw):
                condition = _get(raw, "condition")
                if condition is not None:
                    value = self.evaluate(condition, scope)
                    if isinstance(value, str) and value.lower() in ("true", "false"):
                        value = value.lower() == "true"
                    if not isinstance(value, bool):
                        raise ExpressionError(f"The resource condition must evaluate to a boolean; got "
                                              f"'{type_name(value)}'.")
                    instance.active = value
            if instance.active:
                self.identify(instance, label)
            else:
                self.try_identify(instance, label)
            self.instances.append(instance)
            if symbol is not None:
                self.by_symbol.setdefault(symbol, []).append(instance)
            children = _get(raw, "resources") or []
            if children and instance.id:
                for child in children:
                    if not isinstance(child, dict):
                        raise self.invalid(f"The child resources of {label} must be JSON objects.")
                    self.expand_declaration(child, None, instance, scope)

    def try_identify(self, instance: _Instance, label: str) -> None:
        """A false condition skips the resource; its id is still wanted (if computable) to ignore dependsOn on it."""
        try:
            self.identify(instance, label)
        except TemplateError:
            instance.id = ""

    def identify(self, instance: _Instance, label: str) -> None:
        raw, scope = instance.raw, instance.scope
        with self.located(label, raw):
            resource_type = self.evaluate(_get(raw, "type"), scope)
            name = self.evaluate(_get(raw, "name"), scope)
            if not isinstance(resource_type, str) or not resource_type:
                raise ExpressionError("Required property 'type' not found or not a string.")
            if not isinstance(name, str) or not name:
                raise ExpressionError("Required property 'name' not found or not a string.")
            api_version = self.evaluate(_get(raw, "apiVersion"), scope)
            if api_version is not None and not isinstance(api_version, str):
                raise ExpressionError("The property 'apiVersion' must be a string.")
            if api_version is None and not instance.existing:
                raise ExpressionError("Required property 'apiVersion' not found in JSON.")
            parent = instance.parent
            if parent is not None and "/" not in resource_type:
                resource_type = f"{parent.type}/{resource_type}"
                name = f"{parent.name}/{name}"
            elif parent is not None and name.count("/") < resource_type.count("/") - 1:
                name = f"{parent.name}/{name}"
            resource_type = resource_type.strip("/")
            names = name.strip("/").split("/")
            if len(resource_type.split("/")) - 1 != len(names):
                raise self.invalid(f"The template resource '{name}' for type '{resource_type}'{_where(raw)} has "
                                   "incorrect segment lengths. A nested resource type must have identical number of "
                                   "segments as its resource name. A root resource type must have segment length one "
                                   "greater than its resource name. Please see https://aka.ms/arm-syntax-resources for "
                                   "usage details.")
            subscription = self.evaluate(_get(raw, "subscriptionId"), scope)
            group = self.evaluate(_get(raw, "resourceGroup"), scope)
            is_deployment = resource_type.lower() == _DEPLOYMENTS
            if (subscription is not None or group is not None) and not (is_deployment or instance.existing):
                raise ExpressionError("The 'subscriptionId' and 'resourceGroup' properties are only supported on "
                                      "nested deployments and existing resources.")
            target_sub = subscription or (parent.subscription_id if parent else self.context.subscription_id)
            if group is not None:
                target_group: str | None = group
            elif subscription is not None and subscription != self.context.subscription_id:
                target_group = None
            else:
                target_group = parent.resource_group if parent else self.context.resource_group
            scope_value = self.evaluate(_get(raw, "scope"), scope)
            if scope_value is not None:
                scope_id = self.scope_id(scope_value, target_sub, target_group)
                instance.explicit_scope = True
            elif parent is not None:
                scope_id = parent.scope_id
            else:
                scope_id = self.base_id(target_sub, target_group)
        instance.type, instance.name, instance.api_version = resource_type, name.strip("/"), api_version
        instance.subscription_id, instance.resource_group, instance.scope_id = target_sub, target_group, scope_id
        if resource_type.lower() == "microsoft.resources/resourcegroups" and not instance.explicit_scope:
            instance.id = f"/subscriptions/{target_sub}/resourceGroups/{name}"
        else:
            instance.id = f"{scope_id.rstrip('/')}/{provider_path(resource_type, names)}"

    def scope_id(self, value: Any, subscription: str, group: str | None) -> str:
        if not isinstance(value, str) or not value:
            raise ExpressionError("The resource 'scope' must be a non-empty string.")
        if self.symbolic and value in self.by_symbol and len(self.by_symbol[value]) == 1:
            return self.by_symbol[value][0].id
        if value.startswith("/"):
            return value.rstrip("/") or "/"
        segments = value.strip("/").split("/")
        if len(segments) >= 3 and "." in segments[0] and len(segments) % 2 == 1:
            return f"{self.base_id(subscription, group)}/providers/{value.strip('/')}"
        raise ExpressionError(f"The resource 'scope' '{value}' is not valid: expected a resource id or "
                              "'Namespace/type/name'.")

    # -- resources: pass 2, bodies and nested deployments --

    def build_body(self, instance: _Instance) -> tuple[dict[str, Any], list[Deferred]]:
        raw = instance.raw
        deferred: list[Deferred] = []
        body: dict[str, Any] = {}
        label = f"resource '{instance.symbolic or instance.name}'"
        with self.located(label, raw):
            for key, value in raw.items():
                if key.lower() in _CONTROL_KEYS:
                    continue
                if key.lower() == "properties" and instance.type.lower() == _DEPLOYMENTS and isinstance(value, dict):
                    # The inner template is planned on its own; `{"value": null}` parameters mean "use the default".
                    rest = {k: v for k, v in value.items() if k.lower() not in ("template", "parameters")}
                    result = self.evaluate(rest, instance.scope, defer=deferred, drop_nulls=True)
                    for name in ("parameters", "template"):
                        found, item = lookup(value, name)
                        if found:
                            result[name] = item if name == "template" else self.evaluate(item, instance.scope,
                                                                                         defer=deferred)
                else:
                    result = self.evaluate(value, instance.scope, defer=deferred, drop_nulls=True,
                                           copy_ok=key.lower() == "properties")
                if result is not None:
                    body[key] = result
        for item in deferred:
            instance.references.update(self.referenced_ids(item))
        return body, deferred

    def referenced_ids(self, deferred: Deferred) -> set[str]:
        """Ids named by reference()/list*() in a deferred expression: ARM makes them implicit dependencies."""
        ids: set[str] = set()
        for call in static_calls(deferred.node, frozenset({"reference", "list*"})):
            if not call.args:
                continue
            try:
                target = self.ev.evaluate(call.args[0], deferred.scope)
                if isinstance(target, str):
                    ids.add(self.resolve_reference(target)[0].lower())
            except (ExpressionError, NeedsRuntime, TemplateError):
                continue
        return ids

    def nested_planner(self, instance: _Instance) -> Callable[[dict[str, Any]], Plan] | None:
        properties = _get(instance.raw, "properties")
        if not isinstance(properties, dict) or not lookup(properties, "template")[0]:
            return None
        if self.depth + 1 > MAX_NESTED_DEPTH:
            raise self.invalid(f"The nested deployment '{instance.name}' exceeds the maximum nesting depth of "
                               f"'{MAX_NESTED_DEPTH}'.")
        options = _get(properties, "expressionEvaluationOptions")
        inner = isinstance(options, dict) and str(_get(options, "scope") or "").lower() == "inner"

        def plan_nested(body: dict[str, Any]) -> Plan:
            props = _get(body, "properties") or {}
            template = _get(props, "template")
            if not isinstance(template, dict):
                raise self.invalid(f"The nested deployment '{instance.name}' has a 'template' that is not a JSON "
                                   "object.")
            context = self.nested_context(instance, body)
            if inner:
                parameters = _get(props, "parameters") or {}
                if not isinstance(parameters, dict):
                    raise self.invalid(f"The nested deployment '{instance.name}' has 'parameters' that are not a JSON "
                                       "object.")
                nested = _Template(template, parameters, context, self.deadline, depth=self.depth + 1)
            else:
                nested = _Template(template, {}, context, self.deadline, parent=self, base_scope=instance.scope,
                                   depth=self.depth + 1)
            return _guarded(context, nested.build)

        return plan_nested

    def nested_context(self, instance: _Instance, body: Mapping[str, Any]) -> DeploymentContext:
        ctx = self.context
        changes: dict[str, Any] = {"deployment_name": instance.name, "subscription_id": instance.subscription_id,
                                   "resource_group": instance.resource_group, "location": _get(body, "location")}
        same_group = (instance.subscription_id, instance.resource_group) == (ctx.subscription_id, ctx.resource_group)
        if instance.resource_group is not None and not same_group:
            group = ctx.lookup_resource_group(instance.subscription_id, instance.resource_group) \
                if ctx.lookup_resource_group else None
            if group is None:
                raise TemplateError("ResourceGroupNotFound", f"Resource group '{instance.resource_group}' could not be "
                                                             "found.")
            changes.update(resource_group_location=_get(group, "location"), resource_group_tags=_get(group, "tags"),
                           resource_group_managed_by=_get(group, "managedBy"))
        elif instance.resource_group is None:
            changes.update(resource_group_location=None, resource_group_tags=None, resource_group_managed_by=None)
        return dataclasses.replace(ctx, **changes)

    # -- resources: pass 3, dependencies --

    def dependency_targets(self, instance: _Instance) -> set[str]:
        targets: set[str] = set()
        entries = _get(instance.raw, "dependsOn") or []
        label = f"resource '{instance.symbolic or instance.name}'"
        if not isinstance(entries, list):
            raise self.invalid(f"The template {label}{_where(instance.raw)} is not valid: 'dependsOn' must be an "
                               "array.")
        for entry in entries:
            with self.located(label, instance.raw):
                value = self.evaluate(entry, instance.scope)
            if not isinstance(value, str):
                raise self.invalid(f"The template {label}{_where(instance.raw)} is not valid: 'dependsOn' entries must "
                                   "be strings.")
            targets.update(self.match_dependency(value, instance))
        for reference in instance.references:
            targets.update(i.id.lower() for i in self.instances
                           if i.id.lower() == reference and i.active and not i.existing)
        parent_id = instance.id.rsplit("/", 2)[0] if instance.type.count("/") >= 2 else ""
        for related in (instance.parent, self.instance_by_id(instance.scope_id), self.instance_by_id(parent_id)):
            if related is not None and related.active and not related.existing:
                targets.add(related.id.lower())
        if instance.copy_mode == "serial" and instance.copy_index is not None and instance.batch_size:
            siblings = [i for i in self.instances if i.raw is instance.raw and i.copy_name == instance.copy_name
                        and i.active and i.parent is instance.parent]
            position = siblings.index(instance)
            batch = position // instance.batch_size
            if batch:
                previous = siblings[(batch - 1) * instance.batch_size:batch * instance.batch_size]
                targets.update(i.id.lower() for i in previous)
        targets.discard("")
        return targets

    def instance_by_id(self, resource_id: str) -> _Instance | None:
        wanted = _normalize_id(resource_id)
        return next((i for i in self.instances if i.id and _normalize_id(i.id) == wanted), None)

    def match_dependency(self, value: str, instance: _Instance) -> set[str]:
        """Resolve one dependsOn entry: symbolic name, copy loop name, resource id, 'ns/type/name' or a name."""
        if self.symbolic and value in self.by_symbol:
            return {i.id.lower() for i in self.by_symbol[value] if i.active and not i.existing}
        loop = [i for i in self.instances if i.copy_name and i.copy_name.lower() == value.lower()]
        if loop:
            return {i.id.lower() for i in loop if i.active and not i.existing}
        if self.symbolic:
            symbol, _, rest = value.partition("[")
            if symbol in self.by_symbol and rest.endswith("]") and rest[:-1].isdigit():
                return {i.id.lower() for i in self.by_symbol[symbol]
                        if i.copy_index == int(rest[:-1]) and i.active and not i.existing}
        lowered = value.lower().rstrip("/")
        if value.startswith("/"):
            candidates = [i for i in self.instances if i.id and _normalize_id(i.id) == _normalize_id(value)]
        elif "/" in value and "." in value.split("/")[0]:
            segments = value.strip("/").split("/")
            type_part = "/".join([segments[0], *segments[1::2]]).lower()
            name_part = "/".join(segments[2::2]).lower()
            candidates = [i for i in self.instances if i.type.lower() == type_part and i.name.lower() == name_part]
        else:
            candidates = [i for i in self.instances if i.name.lower() == lowered]
        skipped = [i for i in self.instances if not i.active and not i.id]
        if not candidates and not skipped:
            raise self.invalid(f"The resource '{value}' is not defined in the template. Please see "
                               "https://aka.ms/arm-template/#resources for usage details.")
        return {i.id.lower() for i in candidates if i.active and not i.existing}

    # -- build --

    def build(self) -> Plan:
        if self.parent is None:
            self.resolve_parameters()
            self.resolve_variables()
        self.expand()
        planned: list[PlannedResource] = []
        existing: list[ExistingResource] = []
        for instance in self.instances:
            if not instance.active:
                continue
            if instance.existing:
                existing.append(ExistingResource(instance.id, instance.type, instance.name, instance.api_version,
                                                 instance.symbolic))
                continue
            body, _ = self.build_body(instance)
            location = body.get("location") if isinstance(body.get("location"), str) else None
            resource = PlannedResource(
                id=instance.id, type=instance.type, name=instance.name, api_version=instance.api_version or "",
                location=location, body=body, depends_on=[], subscription_id=instance.subscription_id,
                resource_group=instance.resource_group, scope=instance.scope_id, symbolic_name=instance.symbolic,
                copy_name=instance.copy_name, copy_index=instance.copy_index)
            instance.planned = resource
            planned.append(resource)
        by_id = {i.id.lower(): i for i in self.instances if i.planned is not None}
        for instance in self.instances:
            if instance.planned is None:
                continue
            targets = self.dependency_targets(instance)
            instance.planned.depends_on = [by_id[t].id for t in sorted(targets, key=lambda t: by_id[t].order)
                                           if t in by_id]
        ordered = self.topological(planned)
        for instance in self.instances:
            resource = instance.planned
            if resource is not None and resource.is_deployment:
                resource._nested_planner = self.nested_planner(instance)
                if resource._nested_planner is not None and not resource.deferred:
                    try:
                        resource.nested = resource._nested_planner(resource.body)
                    except TemplateError as exc:
                        if exc.code != "ResourceGroupNotFound":
                            raise
        return Plan(ordered, existing, self.echo_parameters() if self.parent is None else {}, dict(self.raw), self)

    def topological(self, planned: list[PlannedResource]) -> list[PlannedResource]:
        """Dependencies first, declaration order otherwise; a cycle is refused as ARM refuses it."""
        index = {r.id.lower(): r for r in planned}
        state: dict[str, int] = {}
        out: list[PlannedResource] = []
        for root in planned:
            if state.get(root.id.lower()):
                continue
            stack: list[tuple[PlannedResource, Iterator[str]]] = [(root, iter(root.depends_on))]
            state[root.id.lower()] = 1
            while stack:
                resource, deps = stack[-1]
                dep = next(deps, None)
                if dep is None:
                    stack.pop()
                    state[resource.id.lower()] = 2
                    out.append(resource)
                    continue
                key = dep.lower()
                if state.get(key) == 1:
                    path = [r.id for r, _ in stack]
                    start = next(i for i, p in enumerate(path) if p.lower() == key)
                    cycle = path[start:]
                    names = "' and '".join(cycle) if len(cycle) > 1 else cycle[0]
                    raise self.invalid(f"Circular dependency detected on resource: '{names}'. Please see "
                                       "https://aka.ms/arm-template/#resources for usage details.")
                if not state.get(key):
                    state[key] = 1
                    stack.append((index[key], iter(index[key].depends_on)))
        return out

    # -- outputs --

    def evaluate_outputs(self, runtime: Runtime) -> dict[str, dict[str, Any]]:
        ev = Evaluator(self, FUNCTIONS, time.monotonic() + self.context.time_budget_seconds, runtime)

        def run() -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            scope = Scope(section="outputs")
            for name, raw in self.output_defs.items():
                if not isinstance(raw, dict):
                    raise self.invalid(f"The template output '{name}' must be a JSON object.")
                definition = self.expand_ref(raw, f"output '{name}'")
                with self.located(f"output '{name}'", raw):
                    condition = _get(definition, "condition")
                    if condition is not None and self.evaluate(condition, scope, ev) is not True:
                        continue
                    copy = _get(definition, "copy")
                    if isinstance(copy, dict):
                        count = self.copy_count(_get(copy, "count"), scope, f"output '{name}'")
                        value = [self.evaluate(_get(copy, "input"), scope.with_copy(name, i), ev)
                                 for i in range(count)]
                    else:
                        value = self.evaluate(_get(definition, "value"), scope, ev)
                declared = str(_get(definition, "type") or "").lower()
                out[name] = self.output_entry(name, definition, declared, value)
            return out

        return _guarded(self.context, run)

    def output_entry(self, name: str, definition: Mapping[str, Any], declared: str, value: Any) -> dict[str, Any]:
        kinds = _PARAMETER_TYPES.get(declared)
        if kinds is None:
            raise self.invalid(f"The template output '{name}' has the type '{_get(definition, 'type')}', which is not "
                               "valid.")
        if isinstance(value, float) and declared == "int" and value.is_integer():
            value = int(value)
        type_ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not type_ok and not (value is None and _get(definition, "nullable") is True):
            raise self.invalid(f"The template output '{name}' is not valid: Template output JToken type is not valid. "
                               f"Expected '{_EXPECTED[declared]}'. Actual '{type_name(value)}'. Please see "
                               "https://aka.ms/arm-template/#outputs for usage details.")
        entry: dict[str, Any] = {"type": _TYPE_DISPLAY[declared]}
        if not declared.startswith("secure"):
            entry["value"] = value
        return entry
