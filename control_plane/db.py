"""Engine and session handling for SQLite and PostgreSQL, and the declarative base of every model."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Constraint names are spelled out so Alembic migrations and the models agree on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# A pooled PostgreSQL connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 2.0


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(sa.types.TypeDecorator):
    """Timestamps are stored and returned as aware UTC datetimes on both databases."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(database_url, connect_args={"timeout": 30, "check_same_thread": False},
                                  hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # Foreign keys on, WAL so readers never wait for the writer, and a busy timeout for workers.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # Bounded waits: an unreachable or exhausted database must become a quick 503, not a hung request.
    # hide_parameters: a database error logged with its statement must not carry the values bound to it.
    engine = sa.create_engine(database_url, pool_size=5, max_overflow=10, pool_timeout=10, hide_parameters=True,
                              connect_args={"connect_timeout": 10})
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pool_pre_ping, but only for connections that sat unused a while.

    A ping is a round trip on every checkout — on a busy server most of them for connections used a few
    milliseconds earlier. A connection idle longer than IDLE_PING_SECONDS (a database restart, a proxy's idle
    timeout) is pinged before use and replaced if dead; a busy one that the database drops fails its statement, which
    SQLAlchemy sees as a disconnect: it empties the pool, the request answers 503, the next one reconnects.
    """

    @event.listens_for(engine, "checkin")
    def _note_idle_since(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("idle_since", 0.0) < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"idle connection failed its ping: {error}") from error
        if not alive:
            raise DisconnectionError("idle connection failed its ping")


class Database:
    """One engine and its session factory; `session()` is the unit of work."""

    def __init__(self, database_url: str):
        self.url = database_url
        self.engine = make_engine(database_url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL reads in autocommit to save BEGIN and COMMIT round trips; Python's sqlite3 begins transactions
        # only before writes anyway, and switching its isolation level costs two statements per unit of work.
        reading_engine = (self.engine if self.engine.dialect.name == "sqlite"
                          else self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        self._read_factory = sessionmaker(reading_engine, expire_on_commit=False)
        self._reading_now = threading.local()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        session = self._factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A unit of work that only reads: autocommit, so it costs no BEGIN and COMMIT round trips (on PostgreSQL,
        two of the few a read makes). Each statement sees the latest committed data; nothing may be written.

        Nested on one thread, the inner unit shares the outer one's session: a request's authorisation and its
        route then read through one pooled connection.
        """
        outer = getattr(self._reading_now, "session", None)
        if outer is not None:
            yield outer
            return
        session = self._reading_now.session = self._read_factory()
        try:
            yield session
        finally:
            self._reading_now.session = None
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


@contextlib.contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """`session.begin_nested()` that stays inside the unit of work on SQLite too.

    Python's sqlite3 sends BEGIN only before INSERT, UPDATE and DELETE, not before SAVEPOINT: a savepoint opened
    first would be a transaction of its own, committed by its RELEASE, and a later failure of the unit of work could
    no longer undo what it wrote. So the real transaction is begun first.
    """
    if session.get_bind().dialect.name == "sqlite":
        connection = session.connection()
        if not connection.connection.dbapi_connection.in_transaction:
            connection.exec_driver_sql("BEGIN")
    with session.begin_nested():
        yield


def insert_unless_duplicate(session: Session, row: Base) -> bool:
    """Adds `row` in a savepoint: False when a unique index refuses it (someone else inserted it first).

    This is how every create decides races: the database, never a check before the insert.
    """
    try:
        with savepoint(session):
            session.add(row)
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        return False
    return True


def is_unique_violation(error: IntegrityError) -> bool:
    """True when an IntegrityError comes from a unique index (not a foreign key or NOT NULL)."""
    text = str(error.orig).lower()
    return "unique" in text or "duplicate key" in text
