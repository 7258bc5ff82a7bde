"""The portal's pages. Each handler reads the person's session, calls the service's public API with their token,
and renders; writes are POSTs with a CSRF token, redirect after success, and show ARM's message on failure."""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, abort, current_app, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from control_plane.portal import permissions
from control_plane.portal.api import ApiError, Service
from control_plane.portal.auth import SignIn, SignInRequired
from control_plane.portal.config import PortalConfig
from control_plane.portal.kinds import KINDS, children_of
from control_plane.portal.permissions import REGISTRIES, RESOURCE_GROUPS, ROLE_ASSIGNMENTS, Permissions
from control_plane.portal.sessions import COOKIE, PortalSession, SessionStore

SKUS = ("Basic", "Standard", "Premium")
ASSIGNABLE_ROLES = ("Reader", "Contributor", "Owner", "AcrPull", "AcrPush", "AcrDelete", "AcrImageSigner",
                    "User Access Administrator")
PRINCIPAL_TYPES = {"users": "User", "groups": "Group", "servicePrincipals": "ServicePrincipal"}
ACTIVITY_DAYS = 30
FRESH_SIGN_IN_SECONDS = 60  # a 401 this soon after signing in is not cured by signing in again
# A create form must not quietly update what exists already (an ARM PUT is create-or-update).
CREATE_ONLY = {"If-None-Match": "*"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'{extra}")


def register(bp: Blueprint, config: PortalConfig, store: SessionStore, signin: SignIn) -> None:
    """Adds every page to the blueprint (a closure over what the composition root handed in)."""

    # -- the session, CSRF and the security headers ----------------------------------------------------------

    @bp.before_request
    def load_session() -> None:
        if request.endpoint == "portal.static":
            return
        g.portal_session = store.load(request.cookies.get(COOKIE)) or store.new()
        if request.method == "POST":
            sent = request.form.get("csrf") or request.headers.get("X-CSRF-Token") or ""
            expected = g.portal_session.get("csrf") or ""
            if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                abort(400, "The form's security token is missing or stale; reload the page and try again.")

    @bp.after_request
    def finish(response: Response) -> Response:
        session: PortalSession | None = g.get("portal_session")
        if session is not None and session.dirty and not g.get("signed_out"):
            store.save(session)
            response.set_cookie(COOKIE, session.cookie_value, max_age=config.session_lifetime_seconds, path="/",
                                secure=True, httponly=True, samesite="Lax")
        external = (config.external_authority or "").split("/", 3)
        extra = f" {external[0]}//{external[2]}" if config.external_authority else ""
        response.headers["Content-Security-Policy"] = CSP.format(extra=extra)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if request.endpoint != "portal.static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.errorhandler(SignInRequired)
    def sign_in_again(error: SignInRequired):
        if request.path.startswith(f"{bp.url_prefix}/api/"):
            return jsonify({"error": {"code": "SignInRequired", "message": str(error)}}), 401
        back = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("portal.signin_start", next=back))

    @bp.errorhandler(ApiError)
    def api_error(error: ApiError):
        signed_in_at = session().get("signed_in_at") or 0
        if error.status == 401 and time.time() - signed_in_at > FRESH_SIGN_IN_SECONDS:
            return sign_in_again(SignInRequired(error.message))
        # A token the issuer has only just given is refused: signing in again would bring the same (say, an
        # external authority the service does not trust), so the service's reason is shown instead of a loop.
        if request.path.startswith(f"{bp.url_prefix}/api/"):
            return jsonify({"error": {"code": error.code, "message": error.message}}), error.status
        return page("error.html", title="Error", status=error.status, code=error.code, message=error.message), \
            error.status

    @bp.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return page("error.html", title=error.name, status=error.code, code=error.name,
                    message=error.description), error.code

    @bp.errorhandler(Exception)
    def unexpected(error: Exception):
        current_app.logger.exception("portal: unexpected error on %s %s", request.method, request.path)
        return page("error.html", title="Something went wrong", status=500, code="InternalError",
                    message="The portal could not finish this request; please try again."), 500

    # -- helpers ---------------------------------------------------------------------------------------------

    def session() -> PortalSession:
        return g.portal_session

    def service() -> Service:
        if "portal_service" not in g:
            g.portal_service = Service(config, lambda resource: signin.token(session(), resource))
        return g.portal_service

    def user() -> dict:
        found = session().get("user")
        if not found:
            raise SignInRequired("Please sign in.")
        if not found.get("oid"):
            found = {**found, "oid": service().graph("GET", "/me")["id"]}
            session().set("user", found)
        return found

    def can(scope: str) -> Permissions:
        cache = g.setdefault("portal_permissions", {})
        if scope not in cache:
            cache[scope] = permissions.effective(service(), scope, user()["oid"])
        return cache[scope]

    def page(template: str, **context: Any) -> str:
        return render_template(f"portal/{template}", session_user=session().get("user"),
                               csrf=session().csrf_token if session().get("user") else "", **context)

    def sub_id(subscription: str) -> str:
        return f"/subscriptions/{subscription}"

    def group_id(subscription: str, group: str) -> str:
        return f"{sub_id(subscription)}/resourceGroups/{group}"

    def registry_id(subscription: str, group: str, name: str) -> str:
        return f"{group_id(subscription, group)}/providers/Microsoft.ContainerRegistry/registries/{name}"

    def track(lro_url: str | None, title: str, done_url: str) -> Response:
        """Follows a long-running operation on a progress page, or goes straight on when it already finished."""
        if lro_url is None:
            return redirect(done_url)
        key = secrets.token_urlsafe(12)
        operations = dict(session().get("operations") or {})
        operations = dict(list(operations.items())[-19:])  # the last twenty are enough
        operations[key] = {"url": lro_url, "title": title, "done": done_url}
        session().set("operations", operations)
        return redirect(url_for("portal.operation", key=key))

    def registry_tabs(subscription: str, group: str, name: str, current: str) -> list[dict]:
        args = {"subscription": subscription, "group": group, "name": name}
        tabs = [{"title": "Overview", "url": url_for("portal.registry", **args), "key": "overview"},
                {"title": "Repositories", "url": url_for("portal.repositories", **args), "key": "repositories"},
                {"title": "Access control", "url": url_for("portal.access", **args), "key": "access"},
                {"title": "Activity log", "url": url_for("portal.registry_activity", **args), "key": "activity"}]
        if config.external_authority:  # access control names principals through the directory, which is not theirs
            tabs = [tab for tab in tabs if tab["key"] != "access"]
        tabs += [{"title": kind.title, "url": url_for("portal.children", kind=kind.key, **args), "key": kind.key}
                 for kind in children_of("registries")]
        for tab in tabs:
            tab["current"] = tab["key"] == current
        return tabs

    def crumbs(subscription: str | None = None, group: str | None = None, name: str | None = None) -> list[dict]:
        trail = [{"title": "Subscriptions", "url": url_for("portal.home")}]
        if subscription:
            trail.append({"title": "Resource groups", "url": url_for("portal.subscription",
                                                                     subscription=subscription)})
        if group:
            trail.append({"title": group, "url": url_for("portal.group", subscription=subscription, group=group)})
        if name:
            trail.append({"title": name, "url": url_for("portal.registry", subscription=subscription, group=group,
                                                        name=name)})
        return trail

    # -- signing in and out ----------------------------------------------------------------------------------

    @bp.route("/auth/signin", methods=["GET"])
    def signin_start():
        if request.host_url.rstrip("/") != config.public_url:
            # The redirect URI registered for the portal is on the public URL, and the session cookie must be too.
            return redirect(config.public_url + request.full_path.rstrip("?"))
        wanted = request.args.get("next") or ""
        session().set("next", wanted if wanted.startswith(f"{bp.url_prefix}/") else None)
        return redirect(signin.begin(session(), config.public_url + url_for("portal.callback")))

    @bp.route("/auth/callback", methods=["GET"])
    def callback():
        try:
            signin.finish(session(), dict(request.args.items()))
        except SignInRequired as exc:
            return page("signed_out.html", title="Sign in", problem=str(exc)), 400
        # A fresh session id after sign-in: an id planted before it (session fixation) is worth nothing.
        signed_in = store.new()
        signed_in.data = {k: v for k, v in session().data.items() if k not in ("flow", "next")}
        signed_in.data["signed_in_at"] = time.time()
        signed_in.dirty = True
        wanted = session().get("next")
        store.delete(session())
        g.portal_session = signed_in
        return redirect(wanted or url_for("portal.home"))

    @bp.route("/auth/signout", methods=["POST"])
    def signout():
        store.delete(session())
        g.signed_out = True
        response = redirect(signin.logout_url(config.public_url + url_for("portal.home")))
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
        return response

    # -- subscriptions and resource groups -------------------------------------------------------------------

    @bp.route("/", methods=["GET"])
    def home():
        if not session().get("user"):
            return page("signed_out.html", title="Sign in", problem=None)
        subscriptions = service().arm_list("/subscriptions", "subscriptions")
        return page("subscriptions.html", title="Subscriptions", subscriptions=subscriptions, crumbs=crumbs())

    @bp.route("/subscriptions/<subscription>", methods=["GET"])
    def subscription(subscription: str):
        kind = KINDS["resourceGroups"]
        items = service().arm_list(kind.collection_path(sub_id(subscription)), kind.api)
        locations = service().arm_list(f"{sub_id(subscription)}/locations", "subscriptions")
        return page("groups.html", title="Resource groups", subscription=subscription, kind=kind, items=items,
                    locations=locations, perms=can(sub_id(subscription)), crumbs=crumbs(subscription),
                    RESOURCE_GROUPS=RESOURCE_GROUPS)

    @bp.route("/subscriptions/<subscription>/groups", methods=["POST"])
    def create_group(subscription: str):
        name, location = request.form.get("name", "").strip(), request.form.get("location", "")
        service().arm("PUT", f"{group_id(subscription, quote(name, safe=''))}", "resources", {"location": location},
                      headers=CREATE_ONLY)
        return redirect(url_for("portal.group", subscription=subscription, group=name))

    @bp.route("/subscriptions/<subscription>/groups/<group>", methods=["GET"])
    def group(subscription: str, group: str):
        resource = service().arm("GET", group_id(subscription, group), "resources")
        listed = [(kind, service().arm_list(kind.collection_path(group_id(subscription, group)), kind.api))
                  for kind in children_of("resourceGroups")]
        return page("group.html", title=resource["name"], subscription=subscription, group=resource["name"],
                    resource=resource, listed=listed, perms=can(group_id(subscription, group)),
                    crumbs=crumbs(subscription, resource["name"]), RESOURCE_GROUPS=RESOURCE_GROUPS,
                    REGISTRIES=REGISTRIES)

    # -- deleting anything, and following long-running operations --------------------------------------------

    @bp.route("/delete", methods=["POST"])
    def delete():
        kind = KINDS.get(request.form.get("kind", ""))
        resource_id = request.form.get("id", "")
        if kind is None or not resource_id.startswith("/subscriptions/") or not kind.owns(resource_id):
            abort(400, "That is not something the portal deletes.")
        back = request.form.get("back", "")
        lro = service().arm_lro("DELETE", resource_id, kind.api)
        name = resource_id.rsplit("/", 1)[-1]
        return track(lro.status_url, f"Deleting {name}", back if back.startswith(f"{bp.url_prefix}/") else
                     url_for("portal.home"))

    @bp.route("/operations/<key>", methods=["GET"])
    def operation(key: str):
        tracked = (session().get("operations") or {}).get(key)
        if tracked is None:
            abort(404, "No such operation in this session.")
        status = service().operation_status(tracked["url"])
        return page("operation.html", title=tracked["title"], tracked=tracked, key=key, status=status)

    @bp.route("/api/operations/<key>", methods=["GET"])
    def operation_json(key: str):
        tracked = (session().get("operations") or {}).get(key)
        if tracked is None:
            abort(404)
        status = service().operation_status(tracked["url"])
        return jsonify({"status": status.get("status"), "error": status.get("error"), "done": tracked["done"]})

    # -- registries ------------------------------------------------------------------------------------------

    @bp.route("/api/subscriptions/<subscription>/check-name", methods=["GET"])
    def check_name(subscription: str):
        answer = service().arm("POST", f"{sub_id(subscription)}/providers/Microsoft.ContainerRegistry/"
                               "checkNameAvailability", "registries",
                               {"name": request.args.get("name", ""),
                                "type": "Microsoft.ContainerRegistry/registries"})
        return jsonify(answer)

    @bp.route("/subscriptions/<subscription>/groups/<group>/new-registry", methods=["GET", "POST"])
    def new_registry(subscription: str, group: str):
        resource = service().arm("GET", group_id(subscription, group), "resources")
        if not can(group_id(subscription, group)).can(REGISTRIES, "write"):
            abort(403, f"You may not create registries in the resource group '{resource['name']}'.")
        form = {"name": "", "sku": "Standard", "location": resource["location"], "admin": False}
        problem = None
        if request.method == "POST":
            form = {"name": request.form.get("name", "").strip(), "sku": request.form.get("sku", ""),
                    "location": request.form.get("location", ""), "admin": request.form.get("admin") == "on"}
            try:
                lro = service().arm_lro("PUT", registry_id(subscription, group, quote(form["name"], safe="")),
                                        "registries", {"location": form["location"], "sku": {"name": form["sku"]},
                                                       "properties": {"adminUserEnabled": form["admin"]}},
                                        headers=CREATE_ONLY)
            except ApiError as exc:
                if exc.status == 401:
                    raise
                problem = exc
            else:
                done = url_for("portal.registry", subscription=subscription, group=group, name=form["name"])
                return track(lro.status_url, f"Creating {form['name']}", done)
        locations = service().arm_list(f"{sub_id(subscription)}/locations", "subscriptions")
        return page("registry_new.html", title="New registry", subscription=subscription, group=group, form=form,
                    skus=SKUS, locations=locations, problem=problem, crumbs=crumbs(subscription, group)), \
            400 if problem else 200

    def registry_page(subscription: str, group: str, name: str, credentials: dict | None = None):
        rid = registry_id(subscription, group, name)
        resource = service().arm("GET", rid, "registries")
        usages = service().arm("GET", f"{rid}/listUsages", "registries").get("value", [])
        return page("registry.html", title=resource["name"], subscription=subscription, group=group,
                    resource=resource, usages=usages, credentials=credentials, perms=can(rid),
                    tabs=registry_tabs(subscription, group, name, "overview"),
                    crumbs=crumbs(subscription, group), REGISTRIES=REGISTRIES)

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>", methods=["GET"])
    def registry(subscription: str, group: str, name: str):
        return registry_page(subscription, group, name)

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/credentials", methods=["POST"])
    def credentials(subscription: str, group: str, name: str):
        rid = registry_id(subscription, group, name)
        if request.form.get("regenerate"):
            found = service().arm("POST", f"{rid}/regenerateCredential", "registries",
                                  {"name": request.form["regenerate"]})
        else:
            found = service().arm("POST", f"{rid}/listCredentials", "registries")
        return registry_page(subscription, group, name, credentials=found)

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/k/<kind>", methods=["GET"])
    def children(subscription: str, group: str, name: str, kind: str):
        found = KINDS.get(kind)
        if found is None or found.parent != "registries":
            abort(404)
        rid = registry_id(subscription, group, name)
        items = service().arm_list(found.collection_path(rid), found.api)
        return page("children.html", title=found.title, subscription=subscription, group=group, name=name,
                    kind=found, items=items, perms=can(rid), tabs=registry_tabs(subscription, group, name, kind),
                    crumbs=crumbs(subscription, group, name))

    # -- access control --------------------------------------------------------------------------------------

    def role_names(scope: str) -> dict[str, str]:
        return {d["name"].lower(): d["properties"]["roleName"] for d in service().arm_list(
            f"{scope}/providers/Microsoft.Authorization/roleDefinitions", "authorization")}

    def directory_names(ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        found = service().graph("POST", "/directoryObjects/getByIds", {"ids": ids})
        return {o["id"].lower(): o for o in found.get("value", [])}

    def search_directory(query: str) -> list[dict]:
        literal = query.replace("'", "''")
        found = []
        for collection, principal_type in PRINCIPAL_TYPES.items():
            field = "userPrincipalName" if collection == "users" else "displayName"
            for item in service().graph("GET", f"/{collection}", params={
                    "$filter": f"startswith({field},'{literal}')", "$top": "10"}).get("value", []):
                found.append({"id": item["id"], "type": principal_type,
                              "name": item.get("displayName") or item.get("appId"),
                              "detail": item.get("userPrincipalName") or item.get("appId") or ""})
        return found

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/access", methods=["GET"])
    def access(subscription: str, group: str, name: str):
        rid = registry_id(subscription, group, name)
        resource = service().arm("GET", rid, "registries")
        assignments = service().arm_list(f"{rid}/providers/Microsoft.Authorization/roleAssignments",
                                         "authorization", params={"$filter": "atScope()"})
        roles = role_names(rid)
        names = directory_names(sorted({a["properties"]["principalId"] for a in assignments}))
        rows = [{"id": a["id"], "role": roles.get(a["properties"]["roleDefinitionId"].rsplit("/", 1)[-1].lower(), "?"),
                 "principal": names.get(a["properties"]["principalId"].lower(), {}),
                 "principalId": a["properties"]["principalId"],
                 "type": a["properties"].get("principalType", ""), "scope": a["properties"]["scope"],
                 "here": a["properties"]["scope"].lower() == rid.lower()} for a in assignments]
        query = request.args.get("q", "").strip()
        perms = can(rid)
        candidates = search_directory(query) if query and perms.can(ROLE_ASSIGNMENTS, "write") else []
        return page("access.html", title=f"{resource['name']}: access control", subscription=subscription,
                    group=group, resource=resource, rows=rows, query=query, candidates=candidates,
                    roles=[r for r in ASSIGNABLE_ROLES if r in roles.values()], perms=perms,
                    tabs=registry_tabs(subscription, group, name, "access"), crumbs=crumbs(subscription, group),
                    ROLE_ASSIGNMENTS=ROLE_ASSIGNMENTS)

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/access", methods=["POST"])
    def add_access(subscription: str, group: str, name: str):
        rid = registry_id(subscription, group, name)
        principal_type, _, principal_id = request.form.get("principal", "").partition(":")
        role = request.form.get("role", "")
        role_id = next((k for k, v in role_names(rid).items() if v == role), None)
        if principal_type not in PRINCIPAL_TYPES.values() or not principal_id or role_id is None:
            abort(400, "Choose a user, group or service principal and a role.")
        service().arm("PUT", f"{rid}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                      "authorization", {"properties": {
                          "roleDefinitionId": f"{sub_id(subscription)}/providers/Microsoft.Authorization/"
                                              f"roleDefinitions/{role_id}",
                          "principalId": principal_id, "principalType": principal_type}})
        return redirect(url_for("portal.access", subscription=subscription, group=group, name=name))

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/access/remove", methods=["POST"])
    def remove_access(subscription: str, group: str, name: str):
        assignment = request.form.get("id", "")
        if "/providers/Microsoft.Authorization/roleAssignments/" not in assignment or \
                not assignment.startswith("/subscriptions/"):
            abort(400, "That is not a role assignment.")
        service().arm("DELETE", assignment, "authorization")
        return redirect(url_for("portal.access", subscription=subscription, group=group, name=name))

    # -- repositories, tags and manifests (the registry's data plane) ----------------------------------------

    def data_plane(subscription: str, group: str, name: str) -> tuple[dict, Any]:
        resource = service().arm("GET", registry_id(subscription, group, name), "registries")
        return resource, service().registry(resource["properties"]["loginServer"])

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/repositories", methods=["GET"])
    def repositories(subscription: str, group: str, name: str):
        resource, registry_api = data_plane(subscription, group, name)
        return page("repositories.html", title=f"{resource['name']}: repositories", subscription=subscription,
                    group=group, resource=resource, repositories=registry_api.repositories(),
                    tabs=registry_tabs(subscription, group, name, "repositories"), crumbs=crumbs(subscription, group))

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/repositories/<path:repository>",
              methods=["GET"])
    def repository(subscription: str, group: str, name: str, repository: str):
        resource, registry_api = data_plane(subscription, group, name)
        perms = can(resource["id"])
        return page("repository.html", title=repository, subscription=subscription, group=group,
                    resource=resource, repository=repository, tags=registry_api.tags(repository),
                    manifests=registry_api.manifests(repository),
                    may_write=perms.can(REGISTRIES, "push/write"), may_delete=perms.can(REGISTRIES, "artifacts/delete"),
                    tabs=registry_tabs(subscription, group, name, "repositories"),
                    crumbs=crumbs(subscription, group, name))

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/artifact", methods=["POST"])
    def artifact(subscription: str, group: str, name: str):
        repository_name = request.form.get("repository", "")
        kind, item, action = request.form.get("kind"), request.form.get("item", ""), request.form.get("action")
        if kind not in ("_tags", "_manifests") or action not in ("lock", "unlock", "delete") or not item:
            abort(400, "Choose a tag or manifest and what to do with it.")
        _, registry_api = data_plane(subscription, group, name)
        if action == "delete":
            registry_api.delete(repository_name, kind, item)
        else:
            enabled = action == "unlock"
            registry_api.update(repository_name, kind, item, {"writeEnabled": enabled, "deleteEnabled": enabled})
        return redirect(url_for("portal.repository", subscription=subscription, group=group, name=name,
                                repository=repository_name))

    # -- the activity log ------------------------------------------------------------------------------------

    def activity(subscription: str, clause: str) -> list[dict]:
        start = (datetime.now(UTC) - timedelta(days=ACTIVITY_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
        events = service().arm_list(f"{sub_id(subscription)}/providers/Microsoft.Insights/eventtypes/management/"
                                    "values", "activity", params={"$filter": f"eventTimestamp ge '{start}' and "
                                                                             f"{clause}"})
        return sorted(events, key=lambda e: e.get("eventTimestamp", ""), reverse=True)

    @bp.route("/subscriptions/<subscription>/groups/<group>/activity", methods=["GET"])
    def group_activity(subscription: str, group: str):
        events = activity(subscription, f"resourceGroupName eq '{group.replace(chr(39), chr(39) * 2)}'")
        return page("activity.html", title=f"{group}: activity log", events=events, days=ACTIVITY_DAYS, tabs=None,
                    crumbs=crumbs(subscription, group))

    @bp.route("/subscriptions/<subscription>/groups/<group>/registries/<name>/activity", methods=["GET"])
    def registry_activity(subscription: str, group: str, name: str):
        rid = registry_id(subscription, group, name)
        events = activity(subscription, f"resourceUri eq '{rid.replace(chr(39), chr(39) * 2)}'")
        return page("activity.html", title=f"{name}: activity log", events=events, days=ACTIVITY_DAYS,
                    tabs=registry_tabs(subscription, group, name, "activity"), crumbs=crumbs(subscription, group))
