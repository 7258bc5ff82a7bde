"""Microsoft Graph v1.0 wire shapes: `$filter` parsing, request bodies, and the JSON of applications, service
principals, password credentials, users and groups — the subset az 2.91 reads (docs/real-clients.md §12; users and
groups as `az ad user|group` send them, read in azure-cli's role/_msgrpah/_graph_client.py and custom.py).

Graph answers camelCase objects with every declared property present (null or [] when unset); az iterates
`passwordCredentials` without `.get`, so lists are never omitted. A secret's value appears only in addPassword's
answer (`secretText`); listings show its `hint`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from control_plane.identity.errors import GraphBadRequest
from control_plane.identity.models import Application, ClientSecret, DirectoryGroup, User
from control_plane.identity.service import (
    ApplicationView,
    DirectoryClause,
    PrincipalView,
    is_guid,
)

MAX_DISPLAY_NAME = 256
MAX_IDENTIFIER_URIS = 50
MAX_URI = 1024
MAX_GET_BY_IDS = 1000
MAX_TOP = 999
MIN_YEAR, MAX_YEAR = 1970, 9000
SIGN_IN_AUDIENCES = ("AzureADMyOrg", "AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount",
                     "PersonalMicrosoftAccount")

# -- $filter ---------------------------------------------------------------------------------------------------

# An OData string literal: quotes inside it are doubled ('O''Brien').
_LITERAL = r"'((?:[^']|'')*)'"
_STARTSWITH = re.compile(rf"startswith\(\s*(\w+)\s*,\s*{_LITERAL}\s*\)", re.IGNORECASE)
_EQ = re.compile(rf"(\w+)\s+eq\s+{_LITERAL}", re.IGNORECASE)
_ANY = re.compile(rf"(\w+)/any\(\s*(\w+)\s*:\s*(\w+)\s+eq\s+{_LITERAL}\s*\)", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)

# Per collection: the scalar properties `eq`/`startswith` may name, and the string collections `any` may.
APPLICATION_FILTERS = ({"displayName": ("eq", "startswith"), "appId": ("eq",), "id": ("eq",)}, ("identifierUris",))
PRINCIPAL_FILTERS = ({"displayName": ("eq", "startswith"), "appId": ("eq",), "id": ("eq",)},
                     ("servicePrincipalNames",))
USER_FILTERS = ({"displayName": ("eq", "startswith"), "userPrincipalName": ("eq", "startswith"),
                 "mailNickname": ("eq", "startswith"), "id": ("eq",)}, ())
GROUP_FILTERS = ({"displayName": ("eq", "startswith"), "mailNickname": ("eq", "startswith"), "id": ("eq",)}, ())
MAX_NICKNAME = 64
MAX_DESCRIPTION = 1024
MAX_CHECK_GROUPS = 20  # Graph's limit for checkMemberGroups


def _invalid_filter(raw: str, why: str) -> GraphBadRequest:
    return GraphBadRequest(f"Invalid filter clause: {why} (in '{raw[:200]}').")


def _canonical(name: str, known) -> str | None:
    return next((k for k in known if k.lower() == name.lower()), None)


def parse_filter(raw: str | None, allowed: tuple[dict[str, tuple[str, ...]], tuple[str, ...]]
                 ) -> list[DirectoryClause]:
    """`displayName eq 'x'`, `startswith(displayName,'x')`, `appId eq 'x'`, `<collection>/any(c:c eq 'x')`,
    joined with `and`. Read left to right so that an `and` inside a quoted value is not a separator."""
    if raw is None or not raw.strip():
        return []
    if "\x00" in raw:
        raise _invalid_filter(raw.replace("\x00", ""), "a NUL character is not allowed")
    scalars, collections = allowed
    text, position, clauses = raw.strip(), 0, []
    while True:
        if match := _STARTSWITH.match(text, position):
            name, operator, value = match.group(1), "startswith", match.group(2)
        elif match := _ANY.match(text, position):
            if match.group(2) != match.group(3):
                raise _invalid_filter(raw, f"the lambda variable '{match.group(3)}' is not defined")
            name, operator, value = match.group(1), "any", match.group(4)
        elif match := _EQ.match(text, position):
            name, operator, value = match.group(1), "eq", match.group(2)
        else:
            raise _invalid_filter(raw, f"unsupported or malformed expression at '{text[position:position + 60]}'")
        if operator == "any":
            canonical = _canonical(name, collections)
        else:
            canonical = _canonical(name, scalars)
            if canonical is not None and operator not in scalars[canonical]:
                canonical = None
        if canonical is None:
            raise _invalid_filter(raw, f"filtering on '{name}' with '{operator}' is not supported")
        clauses.append(DirectoryClause(canonical, operator, value.replace("''", "'")))
        position = match.end()
        if position == len(text):
            return clauses
        separator = _AND.match(text, position)
        if separator is None:
            raise _invalid_filter(raw, f"expected 'and' at '{text[position:position + 60]}'")
        position = separator.end()


def parse_top(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_TOP:
        raise GraphBadRequest(f"Invalid page size specified: '{raw[:32]}'. Must be between 1 and {MAX_TOP} "
                              "inclusive.")
    return int(raw)


# -- request bodies ---------------------------------------------------------------------------------------------


def _string(body: dict, name: str, *, required: bool = False, maximum: int = MAX_DISPLAY_NAME) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise GraphBadRequest(f"Property '{name}' is required.")
        return None
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise GraphBadRequest(f"Invalid value specified for property '{name}': it must be a non-empty string.")
    if len(value) > maximum:
        raise GraphBadRequest(f"Invalid value specified for property '{name}': at most {maximum} characters.")
    return value


def _identifier_uris(body: dict) -> list[str] | None:
    value = body.get("identifierUris")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise GraphBadRequest("Invalid value specified for property 'identifierUris': it must be a list of strings.")
    if len(value) > MAX_IDENTIFIER_URIS:
        raise GraphBadRequest(f"Invalid value specified for property 'identifierUris': at most "
                              f"{MAX_IDENTIFIER_URIS} values.")
    for uri in value:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00]+", uri) or len(uri) > MAX_URI:
            raise GraphBadRequest(f"Values of identifierUris property must be absolute URIs, such as "
                                  f"'api://<appId>': '{uri[:100]}' is not.")
    return list(dict.fromkeys(value))


MAX_REDIRECT_URIS = 256


def _redirect_uris(body: dict, platform: str) -> list[str] | None:
    """`web.redirectUris` or `publicClient.redirectUris`: absolute http(s) URIs (http only for loopback hosts, as
    Entra allows), or a custom scheme for native apps (publicClient)."""
    section = body.get(platform)
    if section is None:
        return None
    if not isinstance(section, dict):
        raise GraphBadRequest(f"Invalid value specified for property '{platform}': it must be an object.")
    value = section.get("redirectUris")
    if value is None:
        return None
    where = f"{platform}.redirectUris"
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value) or len(value) > MAX_REDIRECT_URIS:
        raise GraphBadRequest(f"Invalid value specified for property '{where}': it must be a list of at most "
                              f"{MAX_REDIRECT_URIS} strings.")
    for uri in value:
        parts = urlsplit(uri) if "\x00" not in uri and len(uri) <= MAX_URI else None
        loopback = parts is not None and parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1",
                                                                                          "::1")
        valid = parts is not None and bool(parts.scheme) and (
            (parts.scheme == "https" and bool(parts.netloc)) or loopback
            or (platform == "publicClient" and parts.scheme not in ("http", "https", "javascript", "data")))
        if not valid or parts.fragment:
            raise GraphBadRequest(f"Invalid value specified for property '{where}': '{uri[:100]}' is not an https "
                                  "URI (http only for localhost) without a fragment.")
    return list(dict.fromkeys(value))


def _refuse_credentials(body: dict) -> None:
    """Certificates (keyCredentials) cannot sign in here, and passwords are made by addPassword: refusing beats
    storing what never works."""
    if body.get("keyCredentials"):
        raise GraphBadRequest("keyCredentials (certificate credentials) are not supported by this service; use "
                              "addPassword to add a client secret.")
    if body.get("passwordCredentials"):
        raise GraphBadRequest("passwordCredentials cannot be set directly; use addPassword.")


def application_changes(body: dict, *, create: bool) -> dict[str, Any]:
    """POST/PATCH applications: the properties this service keeps (display_name, identifier_uris,
    sign_in_audience); other declared Graph properties are accepted and not kept."""
    _refuse_credentials(body)
    changes: dict[str, Any] = {}
    display_name = _string(body, "displayName", required=create)
    if display_name is not None:
        changes["display_name"] = display_name
    uris = _identifier_uris(body)
    if uris is not None or create:
        changes["identifier_uris"] = uris or []
    audience = body.get("signInAudience")
    if audience is not None:
        if audience not in SIGN_IN_AUDIENCES:
            raise GraphBadRequest(f"Invalid value specified for property 'signInAudience': '{str(audience)[:64]}'. "
                                  f"Allowed: {', '.join(SIGN_IN_AUDIENCES)}.")
        changes["sign_in_audience"] = audience
    for platform, name in (("web", "web_redirect_uris"), ("publicClient", "public_client_redirect_uris")):
        uris = _redirect_uris(body, platform)
        if uris is not None:
            changes[name] = uris
    fallback = body.get("isFallbackPublicClient")
    if fallback is not None:
        if not isinstance(fallback, bool):
            raise GraphBadRequest("Invalid value specified for property 'isFallbackPublicClient': it must be a "
                                  "boolean.")
        changes["is_fallback_public_client"] = fallback
    return changes


def principal_app_id(body: dict) -> str:
    """POST servicePrincipals: `{"appId", "accountEnabled"}`."""
    app_id = _string(body, "appId", required=True, maximum=64)
    if body.get("accountEnabled", True) is not True:
        raise GraphBadRequest("Disabled service principals (accountEnabled false) are not supported by this service.")
    _refuse_credentials(body)
    return app_id


def _datetime(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        parsed = parsed and (parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC))
    except (ValueError, OverflowError):
        parsed = None
    # Bounded so that adding a default lifetime, or storing it, never overflows.
    if parsed is None or not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise GraphBadRequest(f"Invalid value specified for property '{name}': '{str(value)[:64]}' is not an "
                              f"ISO 8601 date and time between the years {MIN_YEAR} and {MAX_YEAR}.")
    return parsed


def password_request(body: dict) -> tuple[str | None, datetime | None, datetime | None]:
    """addPassword: `{"passwordCredential": {"displayName", "startDateTime", "endDateTime"}}`, all optional."""
    credential = body.get("passwordCredential") or {}
    if not isinstance(credential, dict):
        raise GraphBadRequest("Invalid value specified for property 'passwordCredential': it must be an object.")
    display_name = _string(credential, "displayName") if credential.get("displayName") is not None else None
    return (display_name, _datetime(credential.get("startDateTime"), "startDateTime"),
            _datetime(credential.get("endDateTime"), "endDateTime"))


def key_id(body: dict) -> str:
    """removePassword: `{"keyId": "<guid>"}`."""
    value = body.get("keyId")
    if not isinstance(value, str) or not is_guid(value.lower()):
        raise GraphBadRequest("Invalid value specified for property 'keyId': it must be a GUID.")
    return value.lower()


def get_by_ids_request(body: dict) -> tuple[list[str], set[str]]:
    """getByIds: `{"ids": [...], "types": [...]}`; no types means every type."""
    ids, types = body.get("ids"), body.get("types")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise GraphBadRequest("Property 'ids' is required: a non-empty list of object ids.")
    if len(ids) > MAX_GET_BY_IDS:
        raise GraphBadRequest(f"At most {MAX_GET_BY_IDS} ids can be requested at once.")
    for value in ids:
        if not is_guid(value.lower()):
            raise GraphBadRequest(f"Invalid object identifier '{value[:100]}'.")
    if types is None or types == []:
        return ids, {"application", "serviceprincipal", "user", "group"}
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise GraphBadRequest("Invalid value specified for property 'types': it must be a list of strings.")
    return ids, {t.lower().removeprefix("#microsoft.graph.") for t in types}


def _boolean(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise GraphBadRequest(f"Invalid value specified for property '{name}': it must be true or false.")
    return value


def _password_profile(body: dict) -> str | None:
    """`passwordProfile.password`. Forcing a change at next sign-in needs an interactive sign-in this service does
    not offer, so it is refused rather than stored to lock the user out."""
    profile = body.get("passwordProfile")
    if profile is None:
        return None
    if not isinstance(profile, dict):
        raise GraphBadRequest("Invalid value specified for property 'passwordProfile': it must be an object.")
    if _boolean(profile, "forceChangePasswordNextSignIn") or _boolean(profile, "forceChangePasswordNextSignInWithMfa"):
        raise GraphBadRequest("forceChangePasswordNextSignIn is not supported by this service: a user changes a "
                              "password only through the administrator.")
    password = profile.get("password")
    if password is not None and not isinstance(password, str):
        raise GraphBadRequest("Invalid value specified for property 'passwordProfile.password'.")
    return password


def user_changes(body: dict, *, create: bool) -> dict[str, Any]:
    """POST/PATCH users: display_name, user_principal_name, mail_nickname, account_enabled, password. Other
    declared Graph properties (givenName, jobTitle, ...) are accepted and not kept."""
    changes: dict[str, Any] = {}
    for name, key, maximum in (("displayName", "display_name", MAX_DISPLAY_NAME),
                               ("userPrincipalName", "user_principal_name", MAX_DISPLAY_NAME),
                               ("mailNickname", "mail_nickname", MAX_NICKNAME)):
        value = _string(body, name, required=create and name != "mailNickname", maximum=maximum)
        if value is not None:
            changes[key] = value
    enabled = _boolean(body, "accountEnabled")
    if enabled is not None:
        changes["account_enabled"] = enabled
    password = _password_profile(body)
    if password is not None:
        changes["password"] = password
    elif create:
        raise GraphBadRequest("Property 'passwordProfile' is required: a user needs a password to sign in.")
    return changes


def group_request(body: dict) -> tuple[str, str | None, str | None]:
    """POST groups: (displayName, mailNickname, description) of a security group."""
    display_name = _string(body, "displayName", required=True)
    if _boolean(body, "mailEnabled") or _boolean(body, "securityEnabled") is False or body.get("groupTypes"):
        raise GraphBadRequest("Only security groups (mailEnabled false, securityEnabled true, no groupTypes) are "
                              "supported by this service.")
    return (display_name, _string(body, "mailNickname", maximum=MAX_NICKNAME),
            _string(body, "description", maximum=MAX_DESCRIPTION))


def member_reference(body: dict) -> str:
    """`members/$ref`: `{"@odata.id": "https://graph/v1.0/directoryObjects/{id}"}` (az's form; `users/{id}` and the
    like, or a bare id, name the same object)."""
    reference = body.get("@odata.id")
    if not isinstance(reference, str):
        raise GraphBadRequest("Property '@odata.id' is required: the URL of the directory object to add.")
    object_id = reference.rstrip("/").rsplit("/", 1)[-1].lower()
    if not is_guid(object_id):
        raise GraphBadRequest(f"Invalid object identifier '{reference[:200]}'.")
    return object_id


def group_ids(body: dict) -> list[str]:
    """checkMemberGroups: `{"groupIds": [...]}`."""
    ids = body.get("groupIds")
    if (not isinstance(ids, list) or not ids or len(ids) > MAX_CHECK_GROUPS
            or not all(isinstance(i, str) and is_guid(i.lower()) for i in ids)):
        raise GraphBadRequest(f"Property 'groupIds' is required: 1 to {MAX_CHECK_GROUPS} group object ids.")
    return ids


def security_enabled_only(body: dict) -> None:
    """getMemberGroups: `{"securityEnabledOnly": bool}`; every group here is a security group, so either way."""
    _boolean(body, "securityEnabledOnly")


# -- responses ---------------------------------------------------------------------------------------------------


def graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def password_credential(secret: ClientSecret, secret_text: str | None = None) -> dict[str, Any]:
    return {
        "customKeyIdentifier": None,
        "displayName": secret.display_name,
        "endDateTime": graph_time(secret.expires_at),
        "hint": secret.hint,
        "keyId": secret.key_id,
        "secretText": secret_text,
        "startDateTime": graph_time(secret.created_at),
    }


def application_to_graph(view: ApplicationView) -> dict[str, Any]:
    application: Application = view.application
    return {
        "id": application.object_id,
        "deletedDateTime": None,
        "appId": application.app_id,
        "applicationTemplateId": None,
        "createdDateTime": graph_time(application.created_at),
        "description": None,
        "displayName": application.display_name,
        "identifierUris": list(application.identifier_uris or []),
        "notes": None,
        "publisherDomain": None,
        "serviceManagementReference": None,
        "signInAudience": application.sign_in_audience,
        "tags": [],
        "api": {"acceptMappedClaims": None, "knownClientApplications": [], "requestedAccessTokenVersion": None,
                "oauth2PermissionScopes": [], "preAuthorizedApplications": []},
        "appRoles": [],
        "keyCredentials": [],
        "passwordCredentials": [password_credential(s) for s in view.passwords],
        "isFallbackPublicClient": application.is_fallback_public_client,
        "publicClient": {"redirectUris": list(application.public_client_redirect_uris or [])},
        "requiredResourceAccess": [],
        "spa": {"redirectUris": []},
        "web": {"homePageUrl": None, "logoutUrl": None, "redirectUris": list(application.web_redirect_uris or []),
                "implicitGrantSettings": {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": False}},
    }


def principal_to_graph(view: PrincipalView) -> dict[str, Any]:
    principal, application = view.principal, view.application
    return {
        "id": principal.object_id,
        "deletedDateTime": None,
        "accountEnabled": True,
        "alternativeNames": [],
        "appDisplayName": application.display_name if application else principal.display_name,
        "appDescription": None,
        "appId": principal.app_id,
        "applicationTemplateId": None,
        "appOwnerOrganizationId": principal.tenant_id,
        "appRoleAssignmentRequired": False,
        "description": None,
        "displayName": principal.display_name,
        "homepage": None,
        "loginUrl": None,
        "logoutUrl": None,
        "notes": None,
        "notificationEmailAddresses": [],
        "preferredSingleSignOnMode": None,
        "replyUrls": [],
        "servicePrincipalNames": view.service_principal_names,
        "servicePrincipalType": "Application",
        "signInAudience": application.sign_in_audience if application else "AzureADMyOrg",
        "tags": [],
        "appRoles": [],
        "keyCredentials": [],
        "oauth2PermissionScopes": [],
        "passwordCredentials": [password_credential(s) for s in view.passwords],
    }


def user_to_graph(user: User) -> dict[str, Any]:
    """Graph's default properties of a user, plus the ones this service keeps (accountEnabled, mailNickname)."""
    return {
        "id": user.object_id,
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": None,
        "jobTitle": None,
        "mail": None,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": None,
        "userPrincipalName": user.user_principal_name,
        "accountEnabled": user.account_enabled,
        "createdDateTime": graph_time(user.created_at),
        "mailNickname": user.mail_nickname,
        "userType": "Member",
    }


def group_to_graph(group: DirectoryGroup) -> dict[str, Any]:
    return {
        "id": group.object_id,
        "deletedDateTime": None,
        "classification": None,
        "createdDateTime": graph_time(group.created_at),
        "creationOptions": [],
        "description": group.description,
        "displayName": group.display_name,
        "expirationDateTime": None,
        "groupTypes": [],
        "isAssignableToRole": None,
        "mail": None,
        "mailEnabled": False,
        "mailNickname": group.mail_nickname,
        "membershipRule": None,
        "membershipRuleProcessingState": None,
        "preferredDataLocation": None,
        "preferredLanguage": None,
        "proxyAddresses": [],
        "renewedDateTime": graph_time(group.created_at),
        "resourceBehaviorOptions": [],
        "resourceProvisioningOptions": [],
        "securityEnabled": True,
        "securityIdentifier": None,
        "theme": None,
        "visibility": None,
    }


_OBJECT_JSON = {"user": user_to_graph, "group": group_to_graph, "servicePrincipal": principal_to_graph,
                "application": application_to_graph}


def directory_object_to_graph(kind: str, item: Any) -> dict[str, Any]:
    """A member list or getByIds answer mixes types, so each object names its own (az maps `@odata.type` to the
    role assignment's principalType)."""
    return {"@odata.type": f"#microsoft.graph.{kind}", **_OBJECT_JSON[kind](item)}
