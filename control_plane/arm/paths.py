"""Case-insensitive ARM paths.

ARM matches the literal segments of a path case-insensitively (`resourceGroups` and `resourcegroups`), while
names keep the caller's casing. This WSGI middleware rewrites the literal segments to one canonical spelling
before routing, walking the path the way ARM reads it: keyword, name, keyword, name; after `providers` come a
namespace and then the type/name pairs again.
"""

from __future__ import annotations

KEYWORDS = {
    word.lower(): word
    for word in (
        "subscriptions",
        "resourceGroups",
        "providers",
        "resources",
        "tenants",
        "locations",
        "operations",
        "operationStatuses",
        "operationResults",
        "checkNameAvailability",
        "registries",
        "listCredentials",
        "regenerateCredential",
        "listUsages",
        "register",
        "metadata",
        "roleAssignments",
        "roleDefinitions",
        "locks",
        "deployments",
        "validate",
        "whatIf",
        "cancel",
        "exportTemplate",
        "batch",
        "eventtypes",
        "values",
        "Microsoft.ContainerRegistry",
        "Microsoft.Resources",
        "Microsoft.Authorization",
        "Microsoft.Insights",
    )
}

NAMESPACE_FOLLOWS = "providers"


def canonical_path(path: str) -> str:
    segments = path.split("/")
    index, expect_keyword = 1, True
    while index < len(segments):
        if expect_keyword:
            word = KEYWORDS.get(segments[index].lower(), segments[index])
            segments[index] = word
            if word == NAMESPACE_FOLLOWS and index + 1 < len(segments):
                index += 1
                segments[index] = KEYWORDS.get(segments[index].lower(), segments[index])
                index += 1
                continue
            expect_keyword = False
        else:
            expect_keyword = True
        index += 1
    return "/".join(segments)


class CanonicalPathMiddleware:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.lower().startswith(("/subscriptions", "/providers")):
            environ["PATH_INFO"] = canonical_path(path)
        return self.app(environ, start_response)
