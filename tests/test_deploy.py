"""The deployment files refer only to what exists: commands and flags of the CLI, settings of config.py, the ports
`serve` listens on, and routes the app serves.

No container engine runs here, so nothing is built: the Dockerfile, deploy/compose.yaml and the kustomize base in
deploy/kubernetes/ are read as text and YAML and checked against the code.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from control_plane.app import create_app
from control_plane.cli import build_parser
from control_plane.config import Settings, SettingsError

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
PROBE_PATHS = ("/healthz", "/readyz", "/metrics")
COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


# -- what the code offers ----------------------------------------------------------------------------------------


def strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """No abbreviations: `--thread` must not pass for `--threads` in a file that is read for years."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                strict(subparser)
    return parser


def parse_cli(argv: list[str]):
    """The parsed arguments of `control-plane <argv>`; fails the test when the parser refuses them."""
    try:
        return strict(build_parser()).parse_args(argv)
    except SystemExit:
        pytest.fail(f"`control-plane {shlex.join(argv)}` is not accepted by control_plane/cli.py's parser")


def serve_port(argv: list[str]) -> int | None:
    """The port a `serve` command line listens on (its --port, else the parser's default); None for others."""
    args = parse_cli(argv)
    return args.port if args.command == "serve" else None


@pytest.fixture(scope="module")
def settings_probe(tmp_path_factory):
    """is_setting(name): does Settings.from_env read this variable? Asked of the code itself: a variable it reads
    changes the parsed settings (or is refused) when given a value nobody would choose."""
    base = {"CONTROL_PLANE_DATA_DIR": str(tmp_path_factory.mktemp("settings"))}
    reference = Settings.from_env(base)

    def is_setting(name: str) -> bool:
        try:
            return Settings.from_env({**base, name: "x-unlikely-value-x"}) != reference
        except (SettingsError, ValueError):
            return True

    assert is_setting("CONTROL_PLANE_DATABASE_URL") and is_setting("CONTROL_PLANE_RUN_WORKER")
    assert not is_setting("CONTROL_PLANE_NO_SUCH_SETTING"), "the probe must tell settings from other names"
    return is_setting


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path_factory.mktemp("deploy-app"))}))


def assert_public_route(app, path: str) -> None:
    """`path` is served on GET, outside ARM's authentication and api-version (a probe sends neither)."""
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(path, method="GET")
    except Exception:
        pytest.fail(f"{path} is not a route of the app")
    view = app.view_functions[endpoint]
    assert getattr(view, "required_action", None) is None, f"{path} requires a bearer token"
    assert getattr(view, "api_versions", None) is None, f"{path} requires an api-version"


def assert_settings(names, is_setting, where: str) -> None:
    ours = sorted(n for n in names if n.startswith("CONTROL_PLANE_"))
    unknown = [n for n in ours if not is_setting(n)]
    assert not unknown, f"{where} sets variables control_plane/config.py does not read: {unknown}"


# -- the Dockerfile ----------------------------------------------------------------------------------------------


def dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments (continuation lines joined), every occurrence in order."""
    instructions: dict[str, list[str]] = {}
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.setdefault(keyword.upper(), []).append(rest.strip())
    return instructions


def test_dockerfile_runs_the_cli_as_a_non_root_user(settings_probe, app):
    instructions = dockerfile()
    entrypoint = json.loads(instructions["ENTRYPOINT"][-1])
    command = json.loads(instructions["CMD"][-1])
    assert entrypoint == ["control-plane"], "the console script is the entry point"
    assert command[:1] == ["serve"] and "--host" in command and command[command.index("--host") + 1] == "0.0.0.0"
    port = serve_port(command)
    assert instructions["EXPOSE"] == [str(port)], "EXPOSE names the port `serve` listens on"

    user = instructions["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "the image runs as an unprivileged user"
    assert user.isdigit() and int(user) >= 1000, "a numeric uid, so runAsNonRoot can check it"

    env_names = [m for line in instructions.get("ENV", []) for m in re.findall(r"([A-Z_][A-Z0-9_]*)=", line)]
    assert_settings(env_names, settings_probe, "the Dockerfile")
    for source in re.findall(r"^COPY (?!--from)(\S+)", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE):
        assert (DEPLOY.parent / source).exists(), f"the Dockerfile copies {source}, which does not exist"


# -- docker compose ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def compose_argv(service: dict) -> list[str]:
    """The image's entry point (`control-plane`) takes the service's command as its arguments."""
    assert "entrypoint" not in service, "services keep the image's entry point"
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def compose_environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def substitute(value: str, values: dict[str, str]) -> str:
    return COMPOSE_VARIABLE.sub(lambda m: values[m.group(1)], value)


def control_plane_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == "control-plane:local"}


def test_compose_has_the_whole_system(compose):
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "azurite" in services["azurite"]["image"]
    ours = control_plane_services(compose)
    commands = {name: parse_cli(compose_argv(s)) for name, s in ours.items()}
    assert sorted(n for n, a in commands.items() if a.command == "serve") == ["api-1", "api-2"]
    assert [n for n, a in commands.items() if a.command == "worker"] == ["worker"]
    migrate = [n for n, a in commands.items() if a.command == "db" and a.subcommand == "upgrade"]
    assert migrate == ["migrate"] and ours["migrate"]["restart"] == "no"
    for name in ours:
        if name != "migrate":
            needs = ours[name].get("depends_on", {})
            assert "migrate" in needs or any("migrate" in services[d].get("depends_on", {}) for d in needs), (
                f"{name} must start after the migrations")
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on {dependency}, which is not a service"
    for service in ours.values():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).exists()


def test_compose_settings_are_real_and_shared_by_every_replica(compose, settings_probe, tmp_path):
    ours = control_plane_services(compose)
    placeholders = {"CONTROL_PLANE_ENCRYPTION_KEY": Fernet.generate_key().decode(), "POSTGRES_PASSWORD": "secret",
                    "CONTROL_PLANE_PUBLIC_URL": "https://localhost:8443"}
    example = (DEPLOY / ".env.example").read_text()
    for name, service in ours.items():
        env = compose_environment(service)
        assert_settings(env, settings_probe, f"compose service {name}")
        for variable in COMPOSE_VARIABLE.findall(" ".join(env.values())):
            assert re.search(rf"^{variable}=", example, re.MULTILINE), f"{variable} is missing in deploy/.env.example"
        # The values parse: what a replica would start with.
        Settings.from_env({**{k: substitute(v, placeholders) for k, v in env.items()},
                           "CONTROL_PLANE_DATA_DIR": str(tmp_path)})
    shared = ("CONTROL_PLANE_DATABASE_URL", "CONTROL_PLANE_ENCRYPTION_KEY", "CONTROL_PLANE_PUBLIC_URL",
              "CONTROL_PLANE_STORAGE")
    for variable in shared:
        assert len({compose_environment(s).get(variable) for s in ours.values()}) == 1, (
            f"every process must have the same {variable}")
    assert compose_environment(ours["api-1"])["CONTROL_PLANE_DATABASE_URL"].startswith("postgresql://")
    for name in ("api-1", "api-2"):
        assert compose_environment(ours[name])["CONTROL_PLANE_RUN_WORKER"] == "false", (
            "the API replicas leave operations to the worker service")


def test_compose_ports_and_healthchecks_match_serve(compose, app):
    for name, service in control_plane_services(compose).items():
        port = serve_port(compose_argv(service))
        if port is None:
            assert "ports" not in service, f"{name} serves nothing and publishes no port"
            continue
        published = [str(p).rsplit(":", 1) for p in service["ports"]]
        assert published and all(int(container) == port for _, container in published), (
            f"{name} publishes {service['ports']} but serves on {port}")
        check = " ".join(service["healthcheck"]["test"])
        url = re.search(r"https?://[^'\" ]+", check).group(0)
        assert f":{port}/" in url, f"{name}'s healthcheck calls {url}, not port {port}"
        path = "/" + url.split("/", 3)[3]
        assert path in PROBE_PATHS
        assert_public_route(app, path)
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    hosts = [str(p).split(":")[0] for p in published]
    assert len(hosts) == len(set(hosts)), "two services publish the same host port"


# -- Kubernetes --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kustomization() -> dict:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def manifests(kustomization) -> list[dict]:
    documents = []
    for resource in kustomization["resources"]:
        path = KUBERNETES / resource
        assert path.is_file(), f"kustomization.yaml lists {resource}, which does not exist"
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    listed = set(kustomization["resources"])
    for path in KUBERNETES.glob("*.yaml"):
        assert path.name == "kustomization.yaml" or path.name in listed, f"{path.name} is not in kustomization.yaml"
    return documents


def of_kind(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_specs(manifests: list[dict]) -> dict[str, dict]:
    return {name: m["spec"]["template"]["spec"] for kind in ("Deployment", "Job")
            for name, m in of_kind(manifests, kind).items()}


def container_argv(container: dict) -> list[str]:
    """Arguments of the image's `control-plane` entry point, or of an explicit `command: [control-plane, ...]`."""
    command = container.get("command")
    if command:
        assert command[0] == "control-plane", f"{container['name']} runs {command[0]}, not the CLI"
        return [*command[1:], *container.get("args", [])]
    return list(container["args"])


def test_kubernetes_runs_the_api_the_worker_and_the_migration(manifests, kustomization):
    deployments, jobs = of_kind(manifests, "Deployment"), of_kind(manifests, "Job")
    image_names = {i["name"] for i in kustomization.get("images", [])}
    commands = {}
    for name, spec in pod_specs(manifests).items():
        for container in spec["containers"]:
            assert container["image"].split(":")[0] in image_names, "kustomize's images: sets the image"
            commands[name] = parse_cli(container_argv(container))
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] >= 1000
    servers = {n: {e["name"]: e.get("value") for e in pod_specs(manifests)[n]["containers"][0].get("env", [])}
               for n, a in commands.items() if a.command == "serve"}
    worker = [n for n, a in commands.items() if a.command == "worker"]
    migrate = [n for n, a in commands.items() if a.command == "db" and a.subcommand == "upgrade"]
    # The management API and the registries' data plane run as separate Deployments (CONTROL_PLANE_SERVES).
    assert sorted(env.get("CONTROL_PLANE_SERVES") for env in servers.values()) == ["management", "registry"]
    for name, env in servers.items():
        assert deployments[name]["spec"]["replicas"] >= 2, f"several {name} replicas"
        assert env.get("CONTROL_PLANE_RUN_WORKER") == "false", f"{name} leaves operations to the worker"
    assert len(worker) == 1 and worker[0] in deployments
    assert len(migrate) == 1 and migrate[0] in jobs
    for name, deployment in deployments.items():
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template_labels.items(), f"{name}'s selector does not select its pods"


def test_kubernetes_settings_are_real_and_come_from_existing_objects(manifests, settings_probe, tmp_path):
    config_maps, secrets = of_kind(manifests, "ConfigMap"), of_kind(manifests, "Secret")
    for name, config_map in config_maps.items():
        assert_settings(config_map["data"], settings_probe, f"ConfigMap {name}")
    for name, secret in secrets.items():
        assert_settings(secret.get("stringData", {}), settings_probe, f"Secret {name}")
    assert any("CONTROL_PLANE_ENCRYPTION_KEY" in s.get("stringData", {}) for s in secrets.values()), (
        "the encryption key comes from a Secret, the same for every pod")
    for pod, spec in pod_specs(manifests).items():
        for container in spec["containers"]:
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    name = source["configMapRef"]["name"]
                    assert name in config_maps, f"{pod} reads ConfigMap {name}, which is not defined"
                    env.update(config_maps[name]["data"])
                else:
                    name = source["secretRef"]["name"]
                    assert name in secrets, f"{pod} reads Secret {name}, which is not defined"
                    env.update(secrets[name]["stringData"])
            for item in container.get("env", []):
                reference = item.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    assert reference["key"] in secrets[reference["name"]]["stringData"]
                env[item["name"]] = item.get("value", "x")
            assert_settings(env, settings_probe, f"{pod}/{container['name']}")
            if "CONTROL_PLANE_ENCRYPTION_KEY" in env:
                env["CONTROL_PLANE_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
            Settings.from_env({**env, "CONTROL_PLANE_DATA_DIR": str(tmp_path)})
            assert "CONTROL_PLANE_DATABASE_URL" in env, f"{pod} must use the shared database"


def test_kubernetes_ports_probes_service_and_ingress_line_up(manifests, app):
    services, ingresses = of_kind(manifests, "Service"), of_kind(manifests, "Ingress")
    api_pods = []
    for name, deployment in of_kind(manifests, "Deployment").items():
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        port = serve_port(container_argv(container))
        if port is None:
            assert "ports" not in container and "readinessProbe" not in container
            continue
        api_pods.append(template)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert list(ports.values()) == [port], f"{name} declares ports {ports}; `serve` listens on {port}"
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert template["metadata"]["annotations"]["prometheus.io/path"] in PROBE_PATHS
        for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            probe = container[probe_name]["httpGet"]
            assert probe["path"] == path, f"{name}'s {probe_name} should call {path}"
            assert probe["port"] in ports or probe["port"] == port
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe_name in container:
                assert_public_route(app, container[probe_name]["httpGet"]["path"])
    assert api_pods, "a Deployment serves the API"

    for name, service in services.items():
        selected = [t for t in api_pods if service["spec"]["selector"].items() <= t["metadata"]["labels"].items()]
        assert selected, f"Service {name} selects no API pod"
        names = {p["name"] for t in selected for p in t["spec"]["containers"][0]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, f"Service {name} targets {port['targetPort']}, not a pod port"
    for budget in of_kind(manifests, "PodDisruptionBudget").values():
        assert any(budget["spec"]["selector"]["matchLabels"].items() <= t["metadata"]["labels"].items()
                   for t in api_pods)

    assert ingresses, "an Ingress publishes the API"
    for name, ingress in ingresses.items():
        assert ingress["spec"]["tls"] and all(t["secretName"] for t in ingress["spec"]["tls"]), "TLS at the Ingress"
        tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in tls_hosts, f"Ingress {name} serves {rule['host']} without TLS"
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] in services, f"Ingress {name} routes to a Service that does not exist"
                port_names = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
                port_numbers = {p["port"] for p in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"].get("name") in port_names or backend["port"].get("number") in port_numbers
    config = next(iter(of_kind(manifests, "ConfigMap").values()))["data"]
    public_url = config["CONTROL_PLANE_PUBLIC_URL"]
    all_tls_hosts = {h for i in ingresses.values() for t in i["spec"]["tls"] for h in t["hosts"]}
    assert public_url.startswith("https://") and public_url[len("https://"):] in all_tls_hosts, (
        "the public URL (the token issuer) is the Ingress host")
    login_servers = "*." + config["CONTROL_PLANE_LOGIN_SERVER_SUFFIX"]
    routed = {r["host"]: p["backend"]["service"]["name"] for i in ingresses.values() for r in i["spec"]["rules"]
              for p in r["http"]["paths"]}
    assert login_servers in all_tls_hosts and routed.get(login_servers) == "control-plane-registry", (
        "every registry's login server reaches the data-plane replicas over TLS")


def test_probe_routes_answer_without_a_token_or_api_version(app):
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["database"]["status"] == "ok"
    assert "control_plane_http_requests_total" in client.get("/metrics").get_data(as_text=True)
