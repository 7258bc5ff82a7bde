"""The `control-plane` command: serve, init, tenant create, subscription create, sp create, db upgrade,
registry config|run."""

from __future__ import annotations

import argparse
import json
import sys

from control_plane.config import Settings, SettingsError


def _prepare(settings: Settings) -> None:
    """Everything that must exist before requests are served: schema, keys, certificates. Safe to repeat."""
    from control_plane import migrate
    from control_plane.crypto import load_cipher
    from control_plane.db import Database
    from control_plane.identity.tokens import TokenIssuer

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        migrate.upgrade(db.engine)
        cipher = load_cipher(settings.encryption_key, settings.data_dir)
        TokenIssuer(db, cipher, settings.public_url, settings.token_lifetime_seconds).ensure_signing_key()
    finally:
        db.dispose()
    if settings.tls == "auto" and settings.tls_cert_file is None:
        from control_plane.tls import ensure_local_ca

        ensure_local_ca(settings.data_dir / "tls")


def _print_json(value: dict) -> None:
    print(json.dumps(value, indent=2))


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane.server import run

    _prepare(settings)
    return run(settings, host=args.host, port=args.port, workers=args.workers, threads=args.threads)


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane import bootstrap
    from control_plane.db import Database

    _prepare(settings)
    db = Database(settings.database_url)
    with db.session() as session:
        state, secret = bootstrap.init(session, reset_secret=args.reset_secret)
    db.dispose()
    if secret is None:
        print("note: already initialised; the client secret was shown once. `control-plane init --reset-secret` "
              "adds a new one.", file=sys.stderr)
    _print_json({
        "tenantId": state["tenantId"],
        "subscriptionId": state["subscriptionId"],
        "clientId": state["clientId"],
        "clientSecret": secret,
        "objectId": state["objectId"],
        **_client_endpoints(settings),
    })
    return 0


def _client_endpoints(settings: Settings) -> dict:
    """What a client needs besides its credentials: where to get tokens, where ARM is, which CA to trust."""
    return {
        "authority": settings.public_url,
        "resourceManagerEndpoint": settings.public_url + "/",
        "caBundle": str(settings.ca_file) if settings.tls == "auto" and settings.tls_cert_file is None else None,
    }


def _with_session(settings: Settings, action):
    from control_plane.arm.errors import ArmError
    from control_plane.db import Database

    _prepare(settings)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            _print_json(action(session))
        return 0
    except ArmError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


def cmd_tenant_create(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane import bootstrap

    def create(session) -> dict:
        state, secret = bootstrap.create_tenant(session, args.name)
        return {"tenantId": state["tenantId"], "subscriptionId": state["subscriptionId"],
                "clientId": state["clientId"], "clientSecret": secret, "objectId": state["objectId"],
                "displayName": state["displayName"], **_client_endpoints(settings)}

    return _with_session(settings, create)


def cmd_subscription_create(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane import bootstrap

    return _with_session(settings, lambda s: bootstrap.create_subscription(s, args.name))


def cmd_sp_create(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane import bootstrap

    return _with_session(settings, lambda s: bootstrap.create_service_principal(s, args.name))


def cmd_sp_list(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane import bootstrap

    return _with_session(settings, bootstrap.list_service_principals)


def cmd_sp_delete(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane import bootstrap

    return _with_session(settings, lambda s: bootstrap.delete_service_principal(s, args.id))


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane import migrate
    from control_plane.db import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    print(f"upgrading {db.engine.url.render_as_string(hide_password=True)} to {args.revision} ...", file=sys.stderr)
    migrate.upgrade(db.engine, args.revision)
    db.dispose()
    print("done", file=sys.stderr)
    return 0


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when rows and containers agree, 1 while drift remains (after --repair: what it could not fix)."""
    from control_plane import doctor
    from control_plane.db import Database
    from control_plane.storage import StorageRouter

    db = Database(settings.database_url)
    storage = StorageRouter(settings.storage, settings.data_dir)

    def progress(line: str) -> None:
        print(f"doctor: {line}", file=sys.stderr, flush=True)

    report = doctor.check(db, storage, settings.locations, repair=args.repair, progress=progress)
    if args.repair and report.drift:
        progress(f"repaired {len(report.repaired)} item(s); checking again ...")
        after = doctor.check(db, storage, settings.locations, progress=progress)
        after.repaired = report.repaired
        report = after
    db.dispose()
    _print_json(report.as_dict())
    return 1 if report.drift else 0


def _registry_options(args: argparse.Namespace):
    from pathlib import Path

    from control_plane.dataplane.runner import Options

    return Options(name=args.name, host=args.host, port=args.port, tls=args.tls,
                   tls_cert_file=Path(args.tls_cert) if args.tls_cert else None,
                   tls_key_file=Path(args.tls_key) if args.tls_key else None,
                   storage_dir=Path(args.storage_dir).resolve() if args.storage_dir else None)


def cmd_registry_config(settings: Settings, args: argparse.Namespace) -> int:
    """Prints the Distribution configuration generated for a registry (and writes it, with the key bundle)."""
    from control_plane.dataplane.runner import RunnerError, prepare

    _prepare(settings)
    try:
        prepared = prepare(settings, _registry_options(args))
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(prepared.yaml, end="")
    return 0


def cmd_registry_run(settings: Settings, args: argparse.Namespace) -> int:
    """Runs the registry's Distribution process in the foreground (this process becomes it)."""
    from control_plane.dataplane.runner import RunnerError, exec_distribution, prepare

    _prepare(settings)
    try:
        prepared = prepare(settings, _registry_options(args))
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return exec_distribution(prepared, args.binary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="control-plane", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API under gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--threads", type=int, default=4, help="threads per worker")
    serve.set_defaults(handler=cmd_serve)

    init = commands.add_parser("init", help="create the tenant, subscription and owner principal (idempotent)")
    init.add_argument("--reset-secret", action="store_true", help="add a new client secret for the owner")
    init.set_defaults(handler=cmd_init)

    tenant = commands.add_parser("tenant", help="manage tenants")
    tenant_commands = tenant.add_subparsers(dest="subcommand", required=True)
    create_tenant = tenant_commands.add_parser(
        "create", help="add a tenant, its subscription and a tenant-admin principal owning it (secret shown once)")
    create_tenant.add_argument("--name", required=True)
    create_tenant.set_defaults(handler=cmd_tenant_create)

    subscription = commands.add_parser("subscription", help="manage subscriptions")
    subscription_commands = subscription.add_subparsers(dest="subcommand", required=True)
    create_subscription = subscription_commands.add_parser(
        "create", help="add a subscription owned by init's principal")
    create_subscription.add_argument("--name", required=True)
    create_subscription.set_defaults(handler=cmd_subscription_create)

    sp = commands.add_parser("sp", help="manage service principals")
    sp_commands = sp.add_subparsers(dest="subcommand", required=True)
    create_sp = sp_commands.add_parser("create", help="add a service principal; prints its secret once")
    create_sp.add_argument("--name", required=True)
    create_sp.set_defaults(handler=cmd_sp_create)
    list_sp = sp_commands.add_parser("list", help="the service principals of init's tenant (appId, id, displayName)")
    list_sp.set_defaults(handler=cmd_sp_list)
    delete_sp = sp_commands.add_parser(
        "delete", help="delete a service principal and its application, secrets and role assignments")
    delete_sp.add_argument("--id", required=True, help="its appId or object id")
    delete_sp.set_defaults(handler=cmd_sp_delete)

    registry = commands.add_parser("registry", help="a registry's data plane: the Distribution registry")
    registry_commands = registry.add_subparsers(dest="subcommand", required=True)
    for command, handler, help_text in (
            ("config", cmd_registry_config, "print the Distribution configuration (YAML) generated for a registry"),
            ("run", cmd_registry_run, "run the registry's Distribution process in the foreground")):
        registry_command = registry_commands.add_parser(command, help=help_text)
        registry_command.add_argument("name", help="the registry's name")
        registry_command.add_argument("--host", default="127.0.0.1", help="address to listen on")
        registry_command.add_argument("--port", type=int, help="port (default: the login server's, else 5000)")
        registry_command.add_argument("--tls", action="store_true",
                                      help="serve https with a certificate from the service's local CA")
        registry_command.add_argument("--tls-cert", help="serve https with this certificate (PEM chain)")
        registry_command.add_argument("--tls-key", help="the key of --tls-cert")
        registry_command.add_argument("--storage-dir", help="keep the registry's data in this folder instead of its "
                                      "container (for a Distribution build without the azure driver)")
        if command == "run":
            registry_command.add_argument("--binary", default="docker-registry",
                                          help="the Distribution executable")
        registry_command.set_defaults(handler=handler)

    doctor = commands.add_parser("doctor", help="report (and --repair) drift between registries and containers")
    doctor.add_argument("--repair", action="store_true", help="delete orphan containers, recreate missing ones")
    doctor.set_defaults(handler=cmd_doctor)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="subcommand", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return args.handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
