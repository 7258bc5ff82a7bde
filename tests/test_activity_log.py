"""The activity log: every mutating ARM call leaves one entry (caller, action, status, correlation id), read back over
raw HTTPS and with the real az (`az monitor activity-log list`, docs/real-clients.md §13); no secret ever reaches it
or the service's log.

One story per backend (module fixture): the bootstrap principal creates a group and a registry with the SDK, updates
it, lists and regenerates its credentials, a principal without rights is refused (403), a bad name is refused (400),
and the registry is deleted. Each call carries its own x-ms-correlation-request-id, so each entry can be told apart.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from azure.core.exceptions import HttpResponseError

from tests.conftest import client_kwargs, unique_registry_name
from tests.support.az import logged_in

EVENTS = "/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"
API = "2015-04-01"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CLOUD = "ActivityLogTest"

ACR = "Microsoft.ContainerRegistry"
REGISTRY_WRITE = f"{ACR}/registries/write"


@dataclass
class Expected:
    label: str
    operation: str
    status: str
    http_status: int
    method: str
    resource_id: str
    correlation_id: str
    caller: str


@dataclass
class Story:
    group: str
    registry_id: str
    group_id: str
    owner_app_id: str
    owner_object_id: str
    outsider: dict
    started: datetime
    calls: list[Expected] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)  # every activity-log answer, scanned for secrets at the end
    bad_code: str = ""

    def by_label(self, label: str) -> Expected:
        return next(c for c in self.calls if c.label == label)


def _correlated() -> tuple[str, dict]:
    correlation_id = str(uuid.uuid4())
    return correlation_id, {"headers": {"x-ms-correlation-request-id": correlation_id}}


@pytest.fixture(scope="module")
def story(service, acr, rmc, arm, credential):
    from azure.identity import ClientSecretCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.containerregistry.models import (
        RegenerateCredentialParameters,
        Registry,
        RegistryUpdateParameters,
        Sku,
    )

    sub = service.subscription_id
    group = f"rg-act-{uuid.uuid4().hex[:10]}"
    name = unique_registry_name("act")
    group_id = f"/subscriptions/{sub}/resourceGroups/{group}"
    registry_id = f"{group_id}/providers/{ACR}/registries/{name}"
    owner_token = credential.get_token("https://management.azure.com/.default").token
    owner = _claims(owner_token)
    outsider = service.cli_json("sp", "create", "--name", f"act-outsider-{uuid.uuid4().hex[:6]}")
    told = Story(group=group, registry_id=registry_id, group_id=group_id, owner_app_id=service.init["clientId"],
                 owner_object_id=owner["oid"], outsider=outsider,
                 started=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=2),
                 secrets=[service.init["clientSecret"], outsider["password"], owner_token])

    def expect(label, operation, status, http_status, method, resource_id, correlation_id, caller=None):
        told.calls.append(Expected(label, operation, status, http_status, method, resource_id, correlation_id,
                                   caller or told.owner_app_id))

    cid, kw = _correlated()
    rmc.resource_groups.create_or_update(group, {"location": "eastus"}, **kw)
    expect("group", "Microsoft.Resources/subscriptions/resourceGroups/write", "Succeeded", 201, "PUT", group_id, cid)

    cid, kw = _correlated()
    acr.registries.begin_create(group, name, Registry(location="eastus", sku=Sku(name="Standard")), **kw).result()
    expect("create", REGISTRY_WRITE, "Succeeded", 201, "PUT", registry_id, cid)

    cid, kw = _correlated()
    acr.registries.begin_update(group, name, RegistryUpdateParameters(admin_user_enabled=True), **kw).result()
    expect("update", REGISTRY_WRITE, "Succeeded", 201, "PATCH", registry_id, cid)

    cid, kw = _correlated()
    credentials = acr.registries.list_credentials(group, name, **kw)
    told.secrets += [p.value for p in credentials.passwords]
    expect("list", f"{ACR}/registries/listCredentials/action", "Succeeded", 200, "POST", registry_id, cid)

    cid, kw = _correlated()
    regenerated = acr.registries.regenerate_credential(group, name, RegenerateCredentialParameters(name="password2"),
                                                       **kw)
    told.secrets += [p.value for p in regenerated.passwords]
    expect("regenerate", f"{ACR}/registries/regenerateCredential/action", "Succeeded", 200, "POST", registry_id, cid)

    outsider_credential = ClientSecretCredential(outsider["tenant"], outsider["appId"], outsider["password"],
                                                 authority=service.init["authority"], disable_instance_discovery=True,
                                                 connection_verify=service.ca)
    told.secrets.append(outsider_credential.get_token("https://management.azure.com/.default").token)
    outsider_acr = ContainerRegistryManagementClient(outsider_credential, sub, **client_kwargs(service))
    cid, kw = _correlated()
    with pytest.raises(HttpResponseError) as refused:
        outsider_acr.registries.begin_create(group, name, Registry(location="eastus", sku=Sku(name="Basic")), **kw)
    assert refused.value.status_code == 403
    expect("refused", REGISTRY_WRITE, "Failed", 403, "PUT", registry_id, cid, outsider["appId"])

    cid, kw = _correlated()
    bad = arm.request("PUT", f"{group_id}/providers/{ACR}/registries/bad_name?api-version=2023-07-01",
                      json={"location": "eastus", "sku": {"name": "Basic"}}, **kw)
    assert bad.status_code == 400, bad.text
    told.bad_code = bad.json()["error"]["code"]
    expect("bad", REGISTRY_WRITE, "Failed", 400, "PUT", f"{group_id}/providers/{ACR}/registries/bad_name", cid)

    cid, kw = _correlated()
    acr.registries.begin_delete(group, name, **kw).result()
    expect("delete", f"{ACR}/registries/delete", "Succeeded", 202, "DELETE", registry_id, cid)

    yield told
    if rmc.resource_groups.check_existence(group):
        rmc.resource_groups.begin_delete(group).result()


def _claims(token: str) -> dict:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


def time_filter(since: datetime, *, naive_end: bool = False) -> str:
    """What az sends: unquoted times, naive UTC with --offset, `+00:00` with explicit times."""
    end = datetime.now(UTC) + timedelta(minutes=5)
    end_text = end.replace(tzinfo=None).isoformat() if naive_end else end.isoformat()
    return f"eventTimestamp ge {since.isoformat()} and eventTimestamp le {end_text}"


def read_events(arm, story: Story, filter_: str | None, select: str | None = None, *, as_arm=None) -> list[dict]:
    """Every page, following nextLink verbatim as az does; each nextLink must carry the filter and select."""
    client = as_arm or arm
    params = {"api-version": API}
    if filter_ is not None:
        params["$filter"] = filter_
    if select is not None:
        params["$select"] = select
    response = client.request("GET", EVENTS.format(sub=arm.service.subscription_id), params=params)
    events: list[dict] = []
    for _ in range(200):
        story.bodies.append(response.text)
        assert response.status_code == 200, response.text
        body = response.json()
        events += body["value"]
        link = body.get("nextLink")
        if not link:
            return events
        query = parse_qs(urlparse(link).query)
        assert query["$filter"] == [filter_], link
        assert query.get("$select") == ([select] if select else None), link
        assert query["api-version"] == [API]
        response = client.request("GET", link)
    raise AssertionError("the nextLink chain does not end")


def ours(story: Story, events: list[dict]) -> list[dict]:
    known = {c.correlation_id for c in story.calls}
    return [e for e in events if e["correlationId"] in known]


def check_event(event: dict, call: Expected, story: Story, service) -> None:
    assert event["correlationId"] == call.correlation_id
    assert event["operationName"]["value"] == call.operation, call.label
    assert event["authorization"] == {"action": call.operation, "scope": call.resource_id}
    assert event["status"]["value"] == call.status, call.label
    assert event["subStatus"]["localizedValue"].endswith(f"(HTTP Status Code: {call.http_status})"), event
    assert event["level"] == ("Informational" if call.status == "Succeeded" else "Error")
    assert event["httpRequest"]["method"] == call.method
    assert event["resourceId"] == call.resource_id
    assert event["resourceGroupName"] == story.group
    assert event["caller"] == call.caller
    claims = event["claims"]
    assert claims["appid"] == call.caller
    if call.caller == story.owner_app_id:
        assert claims["http://schemas.microsoft.com/identity/claims/objectidentifier"] == story.owner_object_id
    else:
        assert claims["http://schemas.microsoft.com/identity/claims/objectidentifier"] == story.outsider["id"]
    assert event["subscriptionId"] == service.subscription_id
    assert event["tenantId"] == service.tenant_id
    assert event["category"]["value"] == "Administrative"
    assert event["eventName"]["value"] == "EndRequest"
    assert event["id"].startswith(f"{call.resource_id}/events/{event['eventDataId']}/ticks/")
    assert event["eventTimestamp"].endswith("Z")
    provider = call.operation.split("/")[0]
    assert event["resourceProviderName"]["value"] == provider


# -- raw HTTPS -----------------------------------------------------------------------------------------------


def test_group_log_shows_every_call_newest_first(arm, story, service):
    events = read_events(arm, story, time_filter(story.started, naive_end=True)
                         + f" and resourceGroupName eq '{story.group}'")
    assert all(e["resourceGroupName"].lower() == story.group.lower() for e in events)
    mine = ours(story, events)
    assert [e["correlationId"] for e in mine] == [c.correlation_id for c in reversed(story.calls)]
    for event, call in zip(mine, reversed(story.calls), strict=True):
        check_event(event, call, story, service)
    stamps = [e["eventTimestamp"] for e in events]
    assert stamps == sorted(stamps, reverse=True)
    assert len({e["eventDataId"] for e in events}) == len(events)
    # A failure names its error code, and nothing more of the answer.
    by_cid = {e["correlationId"]: e for e in mine}
    for label, code in (("refused", "AuthorizationFailed"), ("bad", story.bad_code)):
        message = by_cid[story.by_label(label).correlation_id]["properties"]["statusMessage"]
        assert json.loads(message) == {"error": {"code": code}}
    assert all("statusMessage" not in e["properties"] for e in mine if e["status"]["value"] == "Succeeded")


def test_filters_by_resource_caller_status_provider_and_correlation(arm, story):
    window = time_filter(story.started)
    registry = [c for c in reversed(story.calls) if c.resource_id == story.registry_id]
    by_id = read_events(arm, story, f"{window} and resourceId eq '{story.registry_id.upper()}'")
    assert [e["correlationId"] for e in by_id] == [c.correlation_id for c in registry]

    by_uri = read_events(arm, story, f"{window} and resourceUri eq '{story.registry_id}'")
    assert [e["eventDataId"] for e in by_uri] == [e["eventDataId"] for e in by_id]

    by_caller = read_events(arm, story, f"{window} and caller eq '{story.outsider['appId']}'")
    assert [e["correlationId"] for e in by_caller] == [story.by_label("refused").correlation_id]
    by_object_id = read_events(arm, story, f"{window} and caller eq '{story.outsider['id']}'")
    assert [e["eventDataId"] for e in by_object_id] == [e["eventDataId"] for e in by_caller]

    failed = read_events(arm, story, f"{window} and resourceGroupName eq '{story.group}' and status eq 'Failed'")
    assert {e["correlationId"] for e in failed} == {story.by_label(x).correlation_id for x in ("refused", "bad")}

    groups = read_events(arm, story, f"{window} and resourceGroupName eq '{story.group}'"
                                     " and resourceProvider eq 'microsoft.resources'")
    assert [e["correlationId"] for e in groups] == [story.by_label("group").correlation_id]

    delete = story.by_label("delete")
    [one] = read_events(arm, story, f"{window} and correlationId eq '{delete.correlation_id}'")
    assert one["operationName"]["value"] == delete.operation

    quoted = read_events(arm, story, f"eventTimestamp ge '{story.started.isoformat()}Z' and eventChannels eq "
                                     f"'Admin, Operation' and levels eq 'Error' and resourceGroupName eq "
                                     f"'{story.group}'")
    assert {e["eventDataId"] for e in quoted} == {e["eventDataId"] for e in failed}

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert read_events(arm, story, f"eventTimestamp ge {future}") == []


def test_select_and_paging_keep_the_filter_in_next_link(arm, story, service):
    window = f"{time_filter(story.started)} and resourceGroupName eq '{story.group}'"
    everything = read_events(arm, story, window)
    assert len(everything) > service_page_size(service)  # more than one page
    selected = read_events(arm, story, window, "eventTimestamp , operationName , status")
    assert [set(e) for e in selected] == [{"eventTimestamp", "operationName", "status"}] * len(everything)
    assert [e["eventTimestamp"] for e in selected] == [e["eventTimestamp"] for e in everything]
    one_page = arm.request("GET", EVENTS.format(sub=service.subscription_id),
                           params={"api-version": API, "$filter": window, "$top": "1000"})
    story.bodies.append(one_page.text)
    assert "nextLink" not in one_page.json()
    assert [e["eventDataId"] for e in one_page.json()["value"]] == [e["eventDataId"] for e in everything]


def service_page_size(service) -> int:
    return int(service.env["CONTROL_PLANE_PAGE_SIZE"])


@pytest.mark.parametrize(("query", "status", "code"), [
    ({"api-version": API}, 400, "BadRequest"),
    ({"api-version": API, "$filter": "resourceGroupName eq 'x'"}, 400, "BadRequest"),
    ({"api-version": API, "$filter": "eventTimestamp ge yesterday"}, 400, "BadRequest"),
    ({"api-version": API, "$filter": "eventTimestamp ge 2026-01-01T00:00:00 or 1 eq 1"}, 400, "BadRequest"),
    ({"api-version": API, "$filter": "eventTimestamp ge 2026-01-01T00:00:00 and secret eq 'x'"}, 400, "BadRequest"),
    ({"api-version": API, "$filter": "eventTimestamp ge 2026-01-01T00:00:00 and caller eq unquoted"}, 400,
     "BadRequest"),
    ({"api-version": API, "$filter": "eventTimestamp ge 2030-01-01T00:00:00 and eventTimestamp le 2020-01-01"}, 400,
     "BadRequest"),
    ({"api-version": API, "$filter": "eventTimestamp ge 2026-01-01T00:00:00 and status eq 'a\x00b'"}, 400,
     "BadRequest"),
    ({"api-version": API, "$filter": "eventTimestamp ge 2026-01-01T00:00:00", "$skipToken": "bm9wZQ"}, 400,
     "InvalidSkipToken"),
    ({"api-version": API, "$filter": "eventTimestamp ge 2026-01-01T00:00:00", "$skipToken": "WyJ4IiwieSJd"}, 400,
     "InvalidSkipToken"),
    ({"$filter": "eventTimestamp ge 2026-01-01T00:00:00"}, 400, "MissingApiVersionParameter"),
    ({"api-version": "2023-01-01", "$filter": "eventTimestamp ge 2026-01-01T00:00:00"}, 400,
     "InvalidApiVersionParameter"),
])
def test_bad_queries_get_arm_errors(arm, service, query, status, code):
    response = arm.request("GET", EVENTS.format(sub=service.subscription_id), params=query)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_path_is_case_insensitive_and_only_management_events_exist(arm, service, story):
    params = {"api-version": API, "$filter": time_filter(story.started)}
    mixed = f"/SUBSCRIPTIONS/{service.subscription_id}/Providers/microsoft.insights/EventTypes/Management/Values"
    response = arm.request("GET", mixed, params=params)
    story.bodies.append(response.text)
    assert response.status_code == 200, response.text
    other = arm.request("GET", f"/subscriptions/{service.subscription_id}/providers/Microsoft.Insights/eventtypes/"
                               "service/values", params=params)
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "InvalidResourceType"


def test_reads_are_not_logged(arm, story, service):
    """GETs and the name probe (a POST whose action is a read) leave no entry, as in Azure."""
    cid, kw = _correlated()
    assert arm.request("GET", f"{story.group_id}?api-version=2025-04-01", **kw).status_code == 200
    probe_cid, probe_kw = _correlated()
    probe = arm.request("POST", f"/subscriptions/{service.subscription_id}/providers/{ACR}/checkNameAvailability"
                                "?api-version=2023-07-01",
                        json={"name": "somename1", "type": f"{ACR}/registries"}, **probe_kw)
    assert probe.status_code == 200
    window = time_filter(story.started)
    for correlation_id in (cid, probe_cid):
        assert read_events(arm, story, f"{window} and correlationId eq '{correlation_id}'") == []


# -- the real az CLI ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def az(service, tmp_path_factory):
    """A profile of its own: the service's cloud, the bootstrap principal logged in, never the machine's Azure."""
    return logged_in(service, tmp_path_factory.mktemp("az-activity"), CLOUD)


def az_events(az, story: Story, *args: str) -> list[dict]:
    events = az.json("monitor", "activity-log", "list", *args)
    story.bodies.append(json.dumps(events))
    return events


@pytest.mark.az
def test_az_lists_the_group_log(az, story, service):
    events = az_events(az, story, "--resource-group", story.group, "--offset", "1h")
    mine = ours(story, events)
    assert [e["correlationId"] for e in mine] == [c.correlation_id for c in reversed(story.calls)]
    for event, call in zip(mine, reversed(story.calls), strict=True):
        check_event(event, call, story, service)
        assert event["resourceGroup"].lower() == story.group.lower()  # az parses it from the event's id


@pytest.mark.az
def test_az_filters_by_resource_id_caller_status_and_correlation_id(az, story):
    registry = [c.correlation_id for c in reversed(story.calls) if c.resource_id == story.registry_id]
    by_id = az_events(az, story, "--resource-id", story.registry_id, "--offset", "1h")
    assert [e["correlationId"] for e in by_id] == registry

    by_caller = az_events(az, story, "--caller", story.outsider["appId"], "--offset", "1h")
    assert [e["correlationId"] for e in by_caller] == [story.by_label("refused").correlation_id]
    assert by_caller[0]["status"]["value"] == "Failed"

    failed = az_events(az, story, "--resource-group", story.group, "--status", "Failed", "--offset", "1h")
    assert {e["correlationId"] for e in failed} == {story.by_label(x).correlation_id for x in ("refused", "bad")}

    by_namespace = az_events(az, story, "--namespace", ACR, "--caller", story.outsider["appId"],
                             "--status", "Failed", "--offset", "1h")
    assert [e["correlationId"] for e in by_namespace] == [story.by_label("refused").correlation_id]

    create = story.by_label("create")
    [one] = az_events(az, story, "--correlation-id", create.correlation_id, "--offset", "1h")
    assert one["operationName"]["value"] == REGISTRY_WRITE and one["httpRequest"]["method"] == "PUT"

    start = story.started.strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    explicit = az_events(az, story, "--resource-group", story.group, "--start-time", start, "--end-time", end)
    assert [e["correlationId"] for e in ours(story, explicit)] == [c.correlation_id for c in reversed(story.calls)]


@pytest.mark.az
def test_az_max_events_follows_next_link(az, story, service):
    """Page size 2 (the suite's setting): az fetches one event more than it shows, so both need a second page."""
    everything = az_events(az, story, "--resource-group", story.group, "--offset", "1h")
    two = az_events(az, story, "--resource-group", story.group, "--offset", "1h", "--max-events", "2")
    assert [e["eventDataId"] for e in two] == [e["eventDataId"] for e in everything[:2]]
    five = az_events(az, story, "--resource-group", story.group, "--offset", "1h", "--max-events", "5")
    assert [e["eventDataId"] for e in five] == [e["eventDataId"] for e in everything[:5]]
    selected = az_events(az, story, "--resource-group", story.group, "--offset", "1h",
                         "--select", "eventTimestamp", "operationName", "status")
    assert len(selected) == len(everything)
    assert all({"eventTimestamp", "operationName", "status"} <= set(e) for e in selected)
    assert not any(e.get("caller") or e.get("correlationId") for e in selected)


# -- who may read it ------------------------------------------------------------------------------------------


def test_readers_see_only_what_they_may_read(arm, story, service):
    from azure.identity import ClientSecretCredential

    from tests.conftest import Arm

    outsider = story.outsider
    token = ClientSecretCredential(outsider["tenant"], outsider["appId"], outsider["password"],
                                   authority=service.init["authority"], disable_instance_discovery=True,
                                   connection_verify=service.ca).get_token("https://management.azure.com/.default")
    story.secrets.append(token.token)
    as_outsider = Arm(service, token.token)
    elsewhere = f"/subscriptions/{service.subscription_id}/resourceGroups/rg-act-other-{uuid.uuid4().hex[:8]}"
    other_cid, kw = _correlated()
    assert arm.request("PUT", f"{elsewhere}?api-version=2025-04-01", json={"location": "eastus"},
                       **kw).status_code == 201
    window = time_filter(story.started)
    params = {"api-version": API, "$filter": window}
    refused = as_outsider.request("GET", EVENTS.format(sub=service.subscription_id), params=params)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "AuthorizationFailed"

    assignment_id = f"{story.group_id}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    cid, kw = _correlated()
    granted = arm.request("PUT", f"{assignment_id}?api-version=2022-04-01", json={"properties": {
        "roleDefinitionId": f"/subscriptions/{service.subscription_id}/providers/Microsoft.Authorization/"
                            f"roleDefinitions/{READER}",
        "principalId": outsider["id"], "principalType": "ServicePrincipal"}}, **kw)
    assert granted.status_code == 201, granted.text
    try:
        [grant] = read_events(arm, story, f"{window} and correlationId eq '{cid}'")
        assert grant["resourceId"] == assignment_id
        assert grant["operationName"]["value"] == "Microsoft.Authorization/roleAssignments/write"
        assert grant["resourceProviderName"]["value"] == "Microsoft.Authorization"
        assert grant["resourceType"]["value"] == "Microsoft.Authorization/roleAssignments"

        seen = read_events(arm, story, window, as_arm=as_outsider)
        group = story.group_id.lower()
        assert seen and all(e["resourceId"].lower() == group or e["resourceId"].lower().startswith(group + "/")
                            for e in seen)
        # Every event of the group (the grant's scope itself included), and the grant's own event.
        assert {c.correlation_id for c in story.calls} | {cid} <= {e["correlationId"] for e in seen}
        assert other_cid not in {e["correlationId"] for e in seen}
        assert other_cid in {e["correlationId"] for e in read_events(arm, story, window)}  # the owner sees all
    finally:
        cid, kw = _correlated()
        assert arm.request("DELETE", f"{assignment_id}?api-version=2022-04-01", **kw).status_code == 200
        arm.request("DELETE", f"{elsewhere}?api-version=2025-04-01")
    [removal] = read_events(arm, story, f"{window} and correlationId eq '{cid}'")
    assert removal["operationName"]["value"] == "Microsoft.Authorization/roleAssignments/delete"
    assert removal["status"]["value"] == "Succeeded"


# -- secrets --------------------------------------------------------------------------------------------------


def test_no_secret_reaches_the_log_or_the_service_log(story, service):
    """Last on purpose: it scans every activity-log answer this module received, and the service's log file."""
    secrets = [s for s in story.secrets if s]
    assert len(secrets) >= 6  # init secret, outsider password, two tokens, admin passwords
    assert story.bodies
    for body in story.bodies:
        for secret in secrets:
            assert secret not in body, "a secret appears in an activity-log answer"
    log = service.log()
    assert log
    for secret in secrets:
        assert secret not in log, "a secret appears in the service log"


# -- units: the filter, the resource id, the recorder's rules -------------------------------------------------


@pytest.mark.parametrize(("text", "start", "end"), [
    ("eventTimestamp ge 2026-11-27T02:48:09.478681 and eventTimestamp le 2026-11-27T03:48:09.478681",
     datetime(2026, 11, 27, 2, 48, 9, 478681, UTC), datetime(2026, 11, 27, 3, 48, 9, 478681, UTC)),
    ("eventTimestamp ge 2026-01-01T00:00:00+00:00 and eventTimestamp le 2030-01-01T01:00:00+01:00",
     datetime(2026, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)),
    ("eventTimestamp ge '2014-07-16T04:36:37.6407898Z' and eventTimestamp le '2014-07-20T04:36:37Z'",
     datetime(2014, 7, 16, 4, 36, 37, 640789, UTC), datetime(2014, 7, 20, 4, 36, 37, tzinfo=UTC)),
    ("EVENTTIMESTAMP GT 2026-01-01 AND eventTimestamp lt 2026-01-02",
     datetime(2026, 1, 1, 0, 0, 0, 1, UTC), datetime(2026, 1, 1, 23, 59, 59, 999999, UTC)),
])
def test_filter_times_in_every_form_clients_send(text, start, end):
    from control_plane.activity.filters import parse_filter

    query = parse_filter(text, datetime.now(UTC))
    assert (query.start, query.end) == (start, end)


def test_filter_fields_az_sends():
    from control_plane.activity.filters import parse_filter, parse_select

    now = datetime.now(UTC)
    query = parse_filter("eventTimestamp ge 2026-01-01T00:00:00 and resourceProvider eq 'Microsoft.ContainerRegistry'"
                         " and caller eq 'o''brien and co' and status eq 'Succeeded'", now)
    assert (query.resource_provider, query.caller, query.status, query.end) == (
        "Microsoft.ContainerRegistry", "o'brien and co", "Succeeded", now)
    assert parse_filter("eventTimestamp ge 2026-01-01 and resourceUri eq '/x'", now).resource_id == "/x"
    assert parse_select("eventTimestamp , OPERATIONNAME , status , nonsense") == (
        "eventTimestamp", "operationName", "status")
    assert parse_select(None) is None


@pytest.mark.parametrize("path, resource_id", [
    ("/subscriptions/s/resourceGroups/rg", "/subscriptions/s/resourceGroups/rg"),
    ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/listCredentials",
     "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r"),
    ("/subscriptions/s/providers/Microsoft.ContainerRegistry/register",
     "/subscriptions/s/providers/Microsoft.ContainerRegistry"),
    ("/subscriptions/s/resourceGroups/providers", "/subscriptions/s/resourceGroups/providers"),
    ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/a",
     "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/a"),
])
def test_resource_id_drops_a_trailing_action(path, resource_id):
    from control_plane.activity.service import resource_id_of

    assert resource_id_of(path) == resource_id


@pytest.fixture
def bare_app(monkeypatch):
    """A Flask app with only the recorder, and a `record` that remembers calls (or fails, when told to)."""
    from types import SimpleNamespace

    from flask import Flask

    from control_plane.activity import recorder, service

    app = Flask(__name__)
    app.extensions["control_plane"] = SimpleNamespace(db=None,
                                                      settings=SimpleNamespace(activity_log_retention_days=90))
    recorder.install(app)
    recorded, behaviour = [], {"fail": False}

    def record(db, call, retention_days):
        assert retention_days == 90
        if behaviour["fail"]:
            raise RuntimeError("database is gone")
        recorded.append(call)

    monkeypatch.setattr(service, "record", record)
    return app, recorded, behaviour


def _respond(app, method: str, path: str, status: int, action, body: dict | None = None, caller=True):
    from flask import Response, g

    from control_plane.identity.tokens import Caller

    with app.test_request_context(path, method=method, headers={"x-ms-client-request-id": "secret=1"}):
        if caller:
            g.caller = Caller("t", "oid", "app", "name")
        g.action, g.correlation_id, g.request_id = action, "cid", "rid"
        response = Response(json.dumps(body or {}), status=status, mimetype="application/json")
        return app.process_response(response)


def test_recorder_logs_writes_and_failures_but_not_reads_or_unauthenticated(bare_app):
    from control_plane.authorization import actions

    app, recorded, _ = bare_app
    registry = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r"
    _respond(app, "PUT", registry, 201, actions.REGISTRY_WRITE)
    _respond(app, "POST", registry + "/listCredentials", 200, actions.LIST_CREDENTIALS,
             {"passwords": [{"value": "hunter2"}]})
    _respond(app, "PUT", registry, 403, actions.REGISTRY_WRITE, {"error": {"code": "AuthorizationFailed",
                                                                          "message": "m"}})
    _respond(app, "GET", registry, 200, actions.REGISTRY_READ)
    _respond(app, "POST", "/subscriptions/s/providers/Microsoft.ContainerRegistry/checkNameAvailability", 200,
             actions.CHECK_NAME)
    _respond(app, "PUT", registry, 401, actions.REGISTRY_WRITE)
    _respond(app, "PUT", registry, 400, actions.REGISTRY_WRITE, caller=False)
    _respond(app, "PUT", "/v1.0/applications/x", 200, actions.REGISTRY_WRITE)
    assert [(c.method, c.http_status, c.error_code) for c in recorded] == [
        ("PUT", 201, None), ("POST", 200, None), ("PUT", 403, "AuthorizationFailed")]
    assert all(c.client_request_id is None for c in recorded)  # not a GUID-like id: not kept
    assert "hunter2" not in repr(recorded)


def test_a_failing_log_write_never_fails_the_response(bare_app, caplog):
    from control_plane.authorization import actions

    app, _, behaviour = bare_app
    behaviour["fail"] = True
    response = _respond(app, "DELETE", "/subscriptions/s/resourceGroups/rg", 202, actions.GROUP_DELETE)
    assert response.status_code == 202
    assert "activity log entry not written" in caplog.text and "RuntimeError" in caplog.text
    assert "database is gone" not in caplog.text
