"""The deployments benchmark: `python -m bench.deployments --rounds 3 [--database postgresql]`.

One template of N registries (50 by default), each with an AcrPull role assignment on it that depends on it (a copy
loop of each), measured against its own baseline in the same round on the same service: the same N registries and N
role assignments made by direct REST PUTs, one after the other as a script would (and, since the deployment applies
up to eight resources of a wave at once, also from eight client threads). Per round, in fresh resource groups:

* REST baseline, sequential and 8 threads: each registry PUT (polled to Succeeded when it answered asynchronously),
  then its role assignment PUT;
* what-if of the template against the empty group (all Create);
* the deployment: PUT to provisioningState Succeeded, polled as the SDK does (every 0.2 s here);
* what-if of the same template again (all NoChange), and the redeploy of it unchanged (no write).

Webhooks are not hosted by this service yet (Microsoft.ContainerRegistry/registries/webhooks), so the template
that issue 11 names (registries with role assignments and webhooks) is measured without its webhooks.
Installs nothing; local-folder storage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.run import (
    DEFAULT_POSTGRES,
    REGISTRY_API,
    Config,
    Load,
    Service,
    database,
    machine,
    make_service,
    postgres_version,
    wait_succeeded,
)

DEPLOYMENT_API = "2025-04-01"
ASSIGNMENT_API = "2022-04-01"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
POLL_SECONDS = 0.2
CLIENT_THREADS = 8


def template(count: int) -> dict:
    """N registries and one AcrPull assignment on each, in the quick-start templates' style."""
    registry_id = "resourceId('Microsoft.ContainerRegistry/registries', format('{0}{1}', parameters('prefix'), " \
                  "copyIndex()))"
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"prefix": {"type": "string"}, "principalId": {"type": "string"},
                       "count": {"type": "int", "defaultValue": count}},
        "resources": [
            {"type": "Microsoft.ContainerRegistry/registries", "apiVersion": "2023-07-01",
             "name": "[format('{0}{1}', parameters('prefix'), copyIndex())]", "location": "[resourceGroup().location]",
             "sku": {"name": "Basic"}, "properties": {"adminUserEnabled": False},
             "copy": {"name": "registries", "count": "[parameters('count')]"}},
            {"type": "Microsoft.Authorization/roleAssignments", "apiVersion": ASSIGNMENT_API,
             "scope": "[format('Microsoft.ContainerRegistry/registries/{0}{1}', parameters('prefix'), copyIndex())]",
             "name": f"[guid({registry_id}, parameters('principalId'), '{ACR_PULL}')]",
             "dependsOn": [f"[{registry_id}]"],
             "properties": {"roleDefinitionId": f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                                                f"'{ACR_PULL}')]",
                            "principalId": "[parameters('principalId')]", "principalType": "ServicePrincipal"},
             "copy": {"name": "assignments", "count": "[parameters('count')]"}},
        ],
    }


def _ok(response: requests.Response, *statuses: int) -> requests.Response:
    if response.status_code not in statuses:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:500]}")
    return response


def rest_one(service: Service, session: requests.Session, group: str, name: str) -> None:
    """One registry and its role assignment, as a script with the REST API (or the SDK's begin_create) does it."""
    path = service.registry_path(group, name)
    created = _ok(service.request("PUT", f"{path}?api-version={REGISTRY_API}", session,
                                  json={"location": "eastus", "sku": {"name": "Basic"}}), 200, 201)
    if created.json()["properties"]["provisioningState"] != "Succeeded":
        wait_succeeded(service, path)
    _ok(service.request("PUT", f"{path}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
                               f"?api-version={ASSIGNMENT_API}", session,
                        json={"properties": {"roleDefinitionId": ACR_PULL, "principalId": service.init["objectId"],
                                             "principalType": "ServicePrincipal"}}), 201)


def rest_baseline(service: Service, group: str, prefix: str, count: int, threads: int) -> float:
    service.create_group(group)
    started = time.monotonic()
    if threads == 1:
        session = requests.Session()
        for index in range(count):
            rest_one(service, session, group, f"{prefix}{index}")
    else:
        sessions = [requests.Session() for _ in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: rest_one(service, sessions[i % threads], group, f"{prefix}{i}"), range(count)))
    return time.monotonic() - started


def _deployment_path(service: Service, group: str, name: str) -> str:
    return f"{service.group_path(group)}/providers/Microsoft.Resources/deployments/{name}"


def _body(service: Service, prefix: str, count: int) -> dict:
    return {"properties": {"mode": "Incremental", "template": template(count), "parameters": {
        "prefix": {"value": prefix}, "principalId": {"value": service.init["objectId"]}}}}


def deploy(service: Service, group: str, name: str, body: dict) -> float:
    """PUT to Succeeded, polled as the SDK polls; the seconds it took."""
    path = _deployment_path(service, group, name)
    started = time.monotonic()
    _ok(service.request("PUT", f"{path}?api-version={DEPLOYMENT_API}", json=body), 200, 201)
    while True:
        state = _ok(service.request("GET", f"{path}?api-version={DEPLOYMENT_API}"), 200).json()["properties"]
        if state["provisioningState"] not in ("Accepted", "Running", "Creating", "Updating"):
            break
        time.sleep(POLL_SECONDS)
    elapsed = time.monotonic() - started
    if state["provisioningState"] != "Succeeded":
        raise RuntimeError(f"deployment {name} ended {state['provisioningState']}: {state.get('error')}")
    return elapsed


def what_if(service: Service, group: str, name: str, body: dict) -> tuple[float, dict[str, int]]:
    """POST whatIf and its Location polled to the result: (seconds, how many changes of each type)."""
    path = _deployment_path(service, group, name)
    started = time.monotonic()
    response = _ok(service.request("POST", f"{path}/whatIf?api-version={DEPLOYMENT_API}", json=body), 200, 202)
    while response.status_code == 202:
        time.sleep(POLL_SECONDS)
        response = _ok(service.request("GET", response.headers["Location"]), 200, 202)
    elapsed = time.monotonic() - started
    if response.json().get("status") != "Succeeded":
        raise RuntimeError(f"what-if of {name} failed: {response.text[:1000]}")
    kinds: dict[str, int] = {}
    for change in response.json()["properties"]["changes"]:
        kinds[change["changeType"]] = kinds.get(change["changeType"], 0) + 1
    return elapsed, kinds


def one_round(service: Service, count: int, index: int) -> dict:
    run = uuid.uuid4().hex[:6]
    figures: dict = {}
    figures["rest_sequential_s"] = rest_baseline(service, f"rest1-{run}", f"r1{run}x", count, 1)
    figures["rest_threads_s"] = rest_baseline(service, f"rest8-{run}", f"r8{run}x", count, CLIENT_THREADS)
    group, prefix = f"dep-{run}", f"d{run}x"
    service.create_group(group)
    body = _body(service, prefix, count)
    figures["what_if_create_s"], figures["what_if_create"] = what_if(service, group, "bench", body)
    figures["deploy_s"] = deploy(service, group, "bench", body)
    figures["what_if_nochange_s"], figures["what_if_nochange"] = what_if(service, group, "bench", body)
    figures["redeploy_s"] = deploy(service, group, "bench", body)
    print(f"bench.deployments: round {index + 1}: " + json.dumps(figures), file=sys.stderr)
    return figures


FIGURES: tuple[tuple[str, Callable[[dict], float]], ...] = (
    ("REST PUTs, sequential (s)", lambda r: r["rest_sequential_s"]),
    ("REST PUTs, 8 client threads (s)", lambda r: r["rest_threads_s"]),
    ("deployment to Succeeded (s)", lambda r: r["deploy_s"]),
    ("deployment / REST sequential", lambda r: r["deploy_s"] / r["rest_sequential_s"]),
    ("deployment / REST 8 threads", lambda r: r["deploy_s"] / r["rest_threads_s"]),
    ("what-if, empty group: all Create (s)", lambda r: r["what_if_create_s"]),
    ("what-if, deployed: all NoChange (s)", lambda r: r["what_if_nochange_s"]),
    ("redeploy unchanged to Succeeded (s)", lambda r: r["redeploy_s"]),
)


def summarise(rounds: list[dict]) -> list[dict]:
    summary = []
    for name, read in FIGURES:
        values = [read(r) for r in rounds]
        summary.append({"figure": name, "median": statistics.median(values), "min": min(values), "max": max(values)})
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.deployments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=50, help="registries (and role assignments) per template")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL admin URL")
    parser.add_argument("--json", metavar="FILE", help="write every figure to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(args.workers, args.threads, Load(1, 1, 1), 100, 0, 0)
    info = {"machine": machine(), "database": args.database, "count": args.count, "rounds": args.rounds,
            "gunicorn": f"--workers {args.workers} --threads {args.threads} (gthread), TLS"}
    if args.database == "postgresql":
        info["postgresql"] = postgres_version(args.postgres)
    print(json.dumps(info, indent=2))
    work = Path(tempfile.mkdtemp(prefix="cp-bench-deployments-"))
    rounds: list[dict] = []
    try:
        with contextlib.ExitStack() as stack:
            database_url = stack.enter_context(database(args.database, args.postgres))
            service = make_service("service", work, database_url, "local", config)
            stack.callback(service.stop)
            service.start()
            for index in range(args.rounds):
                rounds.append(one_round(service, args.count, index))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(rounds)
    print(f"\n{'figure':<42}{'median':>10}{'min':>10}{'max':>10}")
    for row in summary:
        print(f"{row['figure']:<42}{row['median']:>10.2f}{row['min']:>10.2f}{row['max']:>10.2f}")
    print("what-if change types: " + json.dumps({"empty": rounds[-1]["what_if_create"],
                                                 "deployed": rounds[-1]["what_if_nochange"]}))
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rounds": rounds, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
