"""openapi/openapi.json documents exactly the routes the app serves, with their api-versions and bearer security.

Plain unit tests: the app is built in-process (SQLite in a temporary folder, no worker, no server). When one of
these fails after you added or changed a route, update openapi/openapi.json; the failure message lists what to add
or remove.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.registries import schemas as registry_schemas

DOC_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"
HTTP_METHODS = ("get", "head", "put", "patch", "post", "delete", "options", "trace")
# Flask adds HEAD to every GET rule and OPTIONS to every rule; neither is documented, except HEAD where the view
# itself answers it (it branches on the method, like the resource-group existence check).
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
EXPLICIT_HEAD = re.compile(r"""request\.method\s*==\s*["']HEAD["']""")
FLASK_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("openapi")
    return create_app(Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(data_dir)}))


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(DOC_PATH.read_text())


def openapi_path(flask_rule: str) -> str:
    """`/subscriptions/<subscription_id>/<path:scope>` -> `/subscriptions/{subscription_id}/{scope}`."""
    return FLASK_VARIABLE.sub(r"{\1}", flask_rule)


def answers_head_itself(view) -> bool:
    try:
        source = inspect.getsource(inspect.unwrap(view))
    except (OSError, TypeError):  # no source to read (e.g. a view defined interactively)
        return False
    return bool(EXPLICIT_HEAD.search(source))


def app_routes(app) -> dict[tuple[str, str], str]:
    """(METHOD, path template) -> endpoint, for every documented-worthy route of the url_map."""
    routes: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("portal."):
            continue  # the portal's HTML pages (control_plane/portal/) are a client of the API, not part of it
        path = openapi_path(rule.rule)
        methods = set(rule.methods or ()) - AUTOMATIC_METHODS
        if "GET" in methods and answers_head_itself(app.view_functions[rule.endpoint]):
            methods.add("HEAD")
        for method in methods:
            routes[(method, path)] = rule.endpoint
    return routes


def doc_operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def resolve(doc: dict, node: dict) -> dict:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local $refs are supported, got {ref}"
        node = doc
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def api_version_enum(doc: dict, path: str, operation: dict) -> list[str] | None:
    parameters = [*doc["paths"][path].get("parameters", []), *operation.get("parameters", [])]
    for parameter in (resolve(doc, p) for p in parameters):
        if parameter["in"] == "query" and parameter["name"] == "api-version":
            assert parameter.get("required") is True, f"api-version must be required on {path}"
            return list(resolve(doc, parameter["schema"])["enum"])
    return None


def format_pairs(pairs, routes: dict[tuple[str, str], str] | None = None) -> str:
    lines = []
    for method, path in sorted(pairs, key=lambda p: (p[1], p[0])):
        endpoint = f"   (Flask endpoint {routes[(method, path)]})" if routes else ""
        lines.append(f"    {method:<7}{path}{endpoint}")
    return "\n".join(lines)


def test_document_lists_exactly_the_served_routes(app, doc):
    served = app_routes(app)
    documented = doc_operations(doc)
    missing = set(served) - set(documented)
    extra = set(documented) - set(served)
    message = [f"{DOC_PATH.relative_to(DOC_PATH.parent.parent)} is out of date with app.url_map."]
    if missing:
        message.append(f"Served by the app but not documented ({len(missing)}) - add these operations:\n"
                       + format_pairs(missing, served))
    if extra:
        message.append(f"Documented but not served by the app ({len(extra)}) - remove these operations:\n"
                       + format_pairs(extra))
    assert not missing and not extra, "\n".join(message)


def test_operation_ids_are_unique(doc):
    ids = [operation.get("operationId") for operation in doc_operations(doc).values()]
    assert None not in ids, "every operation needs an operationId"
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate operationIds: {duplicates}"


def test_api_version_enums_match_the_route_decorators(app, doc):
    served = app_routes(app)
    problems = []
    for (method, path), operation in sorted(doc_operations(doc).items()):
        endpoint = served.get((method, path))
        if endpoint is None:
            continue  # reported by test_document_lists_exactly_the_served_routes
        accepted = getattr(app.view_functions[endpoint], "api_versions", None)
        documented = api_version_enum(doc, path, operation)
        # An enum holds each value once; a version listed twice in the decorator's tuple is documented once.
        expected = None if accepted is None else list(dict.fromkeys(accepted))
        if documented != expected:
            problems.append(f"    {method} {path} ({endpoint}):\n"
                            f"        documented api-version enum: {documented}\n"
                            f"        route accepts:               {expected}")
    assert not problems, "api-version parameters out of date:\n" + "\n".join(problems)


def test_bearer_security_matches_requires(app, doc):
    served = app_routes(app)
    problems = []
    for (method, path), operation in sorted(doc_operations(doc).items()):
        endpoint = served.get((method, path))
        if endpoint is None:
            continue
        action = getattr(app.view_functions[endpoint], "required_action", None)
        security = operation.get("security", doc.get("security", []))
        bearer = any("bearer" in requirement for requirement in security)
        if bearer != (action is not None):
            problems.append(f"    {method} {path} ({endpoint}): documents bearer={bearer}, route uses "
                            f"requires(...)={action is not None}")
        documented_action = operation.get("x-required-action")
        if documented_action != (action.name if action else None):
            problems.append(f"    {method} {path} ({endpoint}): x-required-action {documented_action!r}, route "
                            f"requires {action.name if action else None!r}")
    assert not problems, "security out of date:\n" + "\n".join(problems)


GRAPH_PREFIX = "/v1.0/"


def test_every_operation_has_a_default_error_response(doc):
    """The ARM error envelope on every operation (Graph's own under /v1.0); HEAD answers have no body, so theirs
    declares none."""
    problems = []
    for (method, path), operation in sorted(doc_operations(doc).items()):
        name = "GraphErrorResponse" if path.startswith(GRAPH_PREFIX) else "ErrorResponse"
        default = operation["responses"].get("default")
        if default is None:
            problems.append(f"    {method} {path}: no `default` response")
        elif method != "HEAD" and resolve(doc, default).get("content", {}).get(
                "application/json", {}).get("schema") != {"$ref": f"#/components/schemas/{name}"}:
            problems.append(f"    {method} {path}: `default` is not the {name} envelope")
    assert not problems, "error responses out of date:\n" + "\n".join(problems)


def test_graph_operations_require_a_graph_token(doc):
    """Graph's blueprint authenticates every /v1.0 route itself (no `requires`): each documents `graphBearer`."""
    problems = []
    for (method, path), operation in sorted(doc_operations(doc).items()):
        security = operation.get("security", doc.get("security", []))
        graph = any("graphBearer" in requirement for requirement in security)
        if graph != path.startswith(GRAPH_PREFIX):
            problems.append(f"    {method} {path}: documents graphBearer={graph}")
    assert not problems, "Graph security out of date:\n" + "\n".join(problems)


def test_registry_body_schemas_match_the_marshmallow_schemas(doc):
    schemas = doc["components"]["schemas"]
    properties = set(schemas["RegistryProperties"]["properties"])
    writable = {name for name, schema in schemas["RegistryProperties"]["properties"].items()
                if not resolve(doc, schema).get("readOnly")}
    assert writable == set(registry_schemas.CreateProperties().fields)
    assert set(registry_schemas.DEFAULT_PROPERTIES) <= properties
    assert set(schemas["RegistryPropertiesUpdateParameters"]["properties"]) == set(
        registry_schemas.UpdatableProperties().fields)
    assert set(registry_schemas.RegistryPatch().fields) <= set(schemas["RegistryUpdateParameters"]["properties"])
    assert set(registry_schemas.RegistryPut().fields) <= set(schemas["Registry"]["properties"])


def test_document_is_valid_openapi_3(doc):
    assert doc["openapi"].startswith("3.0.")
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc, cls=validator.OpenAPIV30SpecValidator)
