"""The `control-plane` command: serve, worker, init, tenant create, subscription create, sp create, user, group,
db upgrade, keys rotate|list|rotate-encryption, doctor."""

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
        issuer = TokenIssuer(db, cipher, settings.public_url, settings.token_lifetime_seconds)
        issuer.ensure_signing_key()
        try:
            issuer.signing_key()  # decrypts it: a replica given another encryption key stops here, not at a 500
        except ValueError as exc:
            raise SystemExit(f"error: {exc}. Every replica sharing this database needs the same "
                             "CONTROL_PLANE_ENCRYPTION_KEY.") from None
    finally:
        db.dispose()
    if settings.tls == "auto" and settings.tls_cert_file is None:
        from control_plane.tls import ensure_local_ca, login_server_names

        ensure_local_ca(settings.data_dir / "tls", login_server_names(settings.login_server_suffix))


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


def _in_init_tenant(settings: Settings, action) -> int:
    """Runs a `user`/`group` command on the tenant `init` made, as `sp` commands do."""
    from control_plane import bootstrap

    return _with_session(settings, lambda s: action(s, bootstrap.require_bootstrap(s)["tenantId"]))


def cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    """`user create|list|delete|reset-password|enable|disable`: people who sign in with UPN and password."""
    from control_plane.identity import admin

    actions = {
        "create": lambda s, t: admin.create_user(s, t, args.name, args.password, args.display_name),
        "list": admin.list_users,
        "delete": lambda s, t: admin.delete_user(s, t, args.id),
        "reset-password": lambda s, t: admin.reset_password(s, t, args.id, args.password),
        "enable": lambda s, t: admin.set_enabled(s, t, args.id, True),
        "disable": lambda s, t: admin.set_enabled(s, t, args.id, False),
    }
    return _in_init_tenant(settings, actions[args.subcommand])


def cmd_group(settings: Settings, args: argparse.Namespace) -> int:
    """`group create|delete|list|add-member|remove-member|list-members`: security groups, nested ones too."""
    from control_plane.identity import admin

    actions = {
        "create": lambda s, t: admin.create_group(s, t, args.name, args.description),
        "delete": lambda s, t: admin.delete_group(s, t, args.group),
        "list": admin.list_groups,
        "add-member": lambda s, t: admin.add_member(s, t, args.group, args.member),
        "remove-member": lambda s, t: admin.remove_member(s, t, args.group, args.member),
        "list-members": lambda s, t: admin.list_members(s, t, args.group),
    }
    return _in_init_tenant(settings, actions[args.subcommand])


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    import logging

    from control_plane import migrate
    from control_plane.db import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    print(f"db: upgrading {db.engine.url.render_as_string(hide_password=True)} to {args.revision} ...",
          file=sys.stderr, flush=True)
    # Alembic names each step it runs ("Running upgrade 0002 -> 0003, ..."): that is the progress.
    steps = logging.getLogger("alembic.runtime.migration")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("db: %(message)s"))
    handler.addFilter(lambda record: record.getMessage().startswith("Running "))
    steps.addHandler(handler)
    previous_level = steps.level
    steps.setLevel(logging.INFO)
    try:
        migrate.upgrade(db.engine, args.revision)
    finally:
        steps.removeHandler(handler)
        steps.setLevel(previous_level)
        db.dispose()
    print("db: done", file=sys.stderr)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Runs only the operation worker, no HTTP, until SIGTERM or SIGINT: for deployments whose API replicas run
    with CONTROL_PLANE_RUN_WORKER=false. Leases in the database let any number of these run side by side."""
    import logging
    import signal
    import threading

    from control_plane.app import build_context
    from control_plane.observability import logs

    logs.configure(settings.log_level, settings.log_format or "json")
    log = logging.getLogger("control_plane.worker")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    context = build_context(settings)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    context.worker.start()
    log.info("operation worker %s started (poll every %ss)", context.worker.owner, settings.worker_poll_seconds)
    while not stopping.wait(1.0):
        pass
    log.info("operation worker %s stopping", context.worker.owner)
    context.worker.stop()
    context.db.dispose()
    return 0


def _issuer(settings: Settings, db):
    from control_plane.crypto import load_cipher
    from control_plane.identity.tokens import TokenIssuer

    cipher = load_cipher(settings.encryption_key, settings.data_dir)
    return TokenIssuer(db, cipher, settings.public_url, settings.token_lifetime_seconds)


def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    """A new token-signing key signs from now on; the old ones verify for --grace-seconds more, then retire."""
    from control_plane import keys
    from control_plane.db import Database
    from control_plane.identity.tokens import KEY_CACHE_SECONDS

    grace = keys.default_grace_seconds(settings) if args.grace_seconds is None else args.grace_seconds
    if grace < KEY_CACHE_SECONDS:
        print(f"warning: replicas re-read signing keys every {KEY_CACHE_SECONDS} s; with a grace period shorter "
              "than that, one may still accept (and hand out) tokens of the old key until it does.",
              file=sys.stderr)
    db = Database(settings.database_url)
    try:
        issuer = _issuer(settings, db)
        kid = issuer.rotate(grace_seconds=grace)
        _print_json({"kid": kid, "graceSeconds": grace, "keys": issuer.key_status()})
    finally:
        db.dispose()
    return 0


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane.db import Database

    db = Database(settings.database_url)
    try:
        _print_json({"keys": _issuer(settings, db).key_status()})
    finally:
        db.dispose()
    return 0


def cmd_keys_rotate_encryption(settings: Settings, args: argparse.Namespace) -> int:
    """Re-encrypts every stored secret with the newest encryption key; exit 1 if any value still needs an older key.

    With CONTROL_PLANE_ENCRYPTION_KEY, the newest key is the list's first: prepend a new key (on every replica),
    run this, then drop the old key. With the generated key file, this makes a new key itself and keeps the old
    ones in the keyring file beside it.
    """
    from control_plane import keys
    from control_plane.crypto import KeyFiles, load_cipher
    from control_plane.db import Database

    def progress(line: str) -> None:
        print(f"keys: {line}", file=sys.stderr, flush=True)

    if settings.encryption_key:
        cipher = load_cipher(settings.encryption_key, settings.data_dir)
        mode = "CONTROL_PLANE_ENCRYPTION_KEY"
        if cipher.key_count == 1:
            progress("CONTROL_PLANE_ENCRYPTION_KEY holds one key: re-encrypting with it. To rotate, put a new key "
                     "first (comma-separated, newest first) on every replica, then run this again.")
    else:
        mode = "key file"
        cipher = keys.rotate_file_key(KeyFiles(settings.data_dir))
        progress(f"made a new key in {settings.data_dir / 'encryption.key'}; {cipher.key_count - 1} older key(s) "
                 "kept in the keyring")
    db = Database(settings.database_url)
    try:
        result = keys.reencrypt(db, cipher, progress)
    finally:
        db.dispose()
    _print_json({"mode": mode, **result.as_dict()})
    if not result.complete:
        progress("some values were written with an older key while this ran; run it again")
        return 1
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

    report = doctor.check(db, storage, settings.locations, repair=args.repair, progress=progress,
                          upload_expiry_seconds=settings.upload_expiry_seconds)
    if args.repair and report.drift:
        progress(f"repaired {len(report.repaired)} item(s); checking again ...")
        after = doctor.check(db, storage, settings.locations, progress=progress,
                             upload_expiry_seconds=settings.upload_expiry_seconds)
        after.repaired = report.repaired
        report = after
    db.dispose()
    _print_json(report.as_dict())
    return 1 if report.drift else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="control-plane", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API under gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--threads", type=int, default=4, help="threads per worker")
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser("worker", help="run only the operation worker (no HTTP), for API replicas that "
                                 "set CONTROL_PLANE_RUN_WORKER=false")
    worker.set_defaults(handler=cmd_worker)

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

    user = commands.add_parser("user", help="manage users (people signing in with UPN and password)")
    user_commands = user.add_subparsers(dest="subcommand", required=True)
    create_user = user_commands.add_parser(
        "create", help="add a user <name>@<tenant domain>; prints its password once (generated unless given)")
    create_user.add_argument("--name", required=True, help="the part before '@', or the whole UPN")
    create_user.add_argument("--password", help="at least 8 characters, three of: lower, upper, digit, symbol")
    create_user.add_argument("--display-name")
    user_commands.add_parser("list", help="the users of init's tenant")
    for command, help_text in (("delete", "delete a user, its group memberships and role assignments"),
                               ("reset-password", "a new password (generated unless given); refresh tokens stop"),
                               ("enable", "let a disabled user sign in again"),
                               ("disable", "refuse the user's sign-ins and tokens at once")):
        user_command = user_commands.add_parser(command, help=help_text)
        user_command.add_argument("--id", required=True, help="its UPN, the name before '@', or its object id")
        if command == "reset-password":
            user_command.add_argument("--password")
    user.set_defaults(handler=cmd_user)

    group = commands.add_parser("group", help="manage security groups and their members")
    group_commands = group.add_subparsers(dest="subcommand", required=True)
    create_group = group_commands.add_parser("create", help="add a security group (an existing one of that name "
                                             "is returned)")
    create_group.add_argument("--name", required=True)
    create_group.add_argument("--description")
    group_commands.add_parser("list", help="the groups of init's tenant")
    for command, help_text in (("delete", "delete a group; its members lose what its roles gave them"),
                               ("list-members", "the group's direct members"),
                               ("add-member", "add a user, service principal or group"),
                               ("remove-member", "remove a member")):
        group_command = group_commands.add_parser(command, help=help_text)
        group_command.add_argument("--group", required=True, help="its object id or display name")
        if command.endswith("-member"):
            group_command.add_argument("--member", required=True, help="an object id, a principal's appId, a "
                                       "user's UPN or name, or a group's display name")
    group.set_defaults(handler=cmd_group)

    doctor = commands.add_parser("doctor", help="report (and --repair) drift between registries and containers")
    doctor.add_argument("--repair", action="store_true", help="delete orphan containers, recreate missing ones")
    doctor.set_defaults(handler=cmd_doctor)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="subcommand", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=cmd_db_upgrade)

    keys = commands.add_parser("keys", help="rotate the token-signing and data-encryption keys")
    keys_commands = keys.add_subparsers(dest="subcommand", required=True)
    rotate = keys_commands.add_parser("rotate", help="add a new token-signing key; retire the old ones after a "
                                      "grace period (both verify meanwhile)")
    rotate.add_argument("--grace-seconds", type=_non_negative_int, default=None,
                        help="how long older keys keep verifying (default: the longest token lifetime + 120 s)")
    rotate.set_defaults(handler=cmd_keys_rotate)
    keys_commands.add_parser("list", help="the token-signing keys and their state").set_defaults(
        handler=cmd_keys_list)
    keys_commands.add_parser(
        "rotate-encryption", help="re-encrypt every stored secret with the newest encryption key (with the "
        "generated key file: make a new key first, keeping the old in the keyring)").set_defaults(
        handler=cmd_keys_rotate_encryption)
    return parser


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


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
