"""Key rotation: the token-signing keys (`control-plane keys rotate`) and the data-encryption key
(`control-plane keys rotate-encryption`).

Signing keys live in the database, so one rotation reaches every replica: each signs with the newest key it knows
(it re-reads the keys at most KEY_CACHE_SECONDS later) and verifies with every live one (reloading when a token
names a key it does not know yet). The old key keeps verifying for a grace period, so tokens already handed out
keep working until they would have expired anyway.

The encryption key protects what the service must read back (admin passwords, signing keys' private halves).
Re-encryption rewrites every such value with the newest key; once it is done, older keys can be dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from control_plane.config import Settings
from control_plane.crypto import Cipher, KeyFiles
from control_plane.db import Database
from control_plane.identity.models import SigningKey
from control_plane.identity.tokens import CLOCK_SKEW_SECONDS, KEY_CACHE_SECONDS
from control_plane.registries.models import Registry

# Every column that holds a value encrypted with the Cipher. A new one must be listed here, or a rotation of the
# encryption key would leave it behind (tests/test_key_rotation.py checks every table's values decrypt afterwards).
ENCRYPTED_COLUMNS: dict[type, tuple[str, ...]] = {
    Registry: ("admin_password_1", "admin_password_2"),
    SigningKey: ("private_key_encrypted",),
}
BATCH_SIZE = 200

Progress = Callable[[str], None]


def default_grace_seconds(settings: Settings) -> int:
    """Long enough for every token signed with the old key to expire: the longest token lifetime, plus the time a
    replica may still sign with the old key (its key cache), plus the clock skew validation allows."""
    lifetime = max(settings.token_lifetime_seconds, settings.registry_token_lifetime_seconds)
    return lifetime + KEY_CACHE_SECONDS + CLOCK_SKEW_SECONDS


@dataclass
class Reencryption:
    rewritten: dict[str, int] = field(default_factory=dict)
    not_with_newest_key: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not any(self.not_with_newest_key.values())

    def as_dict(self) -> dict:
        return {"rewritten": self.rewritten, "notWithNewestKey": self.not_with_newest_key, "complete": self.complete}


def rotate_file_key(key_files: KeyFiles) -> Cipher:
    """The generated key: a new one in `encryption.key`, the old ones kept in `encryption.keyring`."""
    return Cipher(key_files.rotate(), key_files)


def reencrypt(db: Database, cipher: Cipher, progress: Progress) -> Reencryption:
    """Rewrites every encrypted value with the cipher's newest key, then checks that key alone reads them all.

    Row by row, each UPDATE conditional on the value it read, so a value a request replaced meanwhile is left as
    that request wrote it (with the key it had); the check afterwards reports any such value.
    """
    result = Reencryption()
    for model, columns in ENCRYPTED_COLUMNS.items():
        table = model.__table__
        name = table.name
        total = _count(db, table)
        done = rewritten = 0
        progress(f"{name}: re-encrypting {', '.join(columns)} in {total} row(s)")
        for rows in _batches(db, table, columns):
            with db.session() as session:
                for row in rows:
                    for column in columns:
                        old = row[column]
                        if old is None:
                            continue
                        updated = session.execute(
                            sa.update(table)
                            .where(_key_of(table, row), table.c[column] == old)
                            .values({column: cipher.reencrypt(old)})
                        ).rowcount
                        rewritten += updated
            done += len(rows)
            progress(f"{name}: {done}/{total} row(s)")
        result.rewritten[name] = rewritten
        result.not_with_newest_key[name] = sum(
            1 for rows in _batches(db, table, columns) for row in rows for column in columns
            if row[column] is not None and not cipher.newest_key_decrypts(row[column]))
    return result


def _count(db: Database, table: sa.Table) -> int:
    with db.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(table)) or 0


def _key_of(table: sa.Table, row) -> sa.ColumnElement:
    return sa.and_(*(column == row[column.name] for column in table.primary_key.columns))


def _batches(db: Database, table: sa.Table, columns: tuple[str, ...]):
    """Rows in primary-key order, a batch at a time (keyset paging: no OFFSET, no long transaction)."""
    keys = list(table.primary_key.columns)
    last = None
    while True:
        query = sa.select(*keys, *(table.c[c] for c in columns)).order_by(*keys).limit(BATCH_SIZE)
        if last is not None:
            query = query.where(sa.tuple_(*keys) > sa.tuple_(*last))
        with db.session() as session:
            rows = [row._mapping for row in session.execute(query)]
        if not rows:
            return
        yield rows
        last = [rows[-1][k.name] for k in keys]
