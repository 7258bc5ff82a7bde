"""Unit tests of the protocol plumbing that every route relies on."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from control_plane.arm.paging import InvalidSkipToken, decode_token, encode_token, next_link, page_request
from control_plane.arm.paths import canonical_path
from control_plane.config import Settings, SettingsError
from control_plane.registries.schemas import DEFAULT_PROPERTIES, merge, with_defaults


@pytest.mark.parametrize(("given", "expected"), [
    ("/subscriptions/S/resourcegroups/Rg/providers/microsoft.containerregistry/REGISTRIES/MyReg",
     "/subscriptions/S/resourceGroups/Rg/providers/Microsoft.ContainerRegistry/registries/MyReg"),
    # a name that looks like a keyword keeps its casing: only keyword positions are rewritten
    ("/subscriptions/S/resourceGroups/Providers/providers/Microsoft.ContainerRegistry/registries/Registries",
     "/subscriptions/S/resourceGroups/Providers/providers/Microsoft.ContainerRegistry/registries/Registries"),
    ("/SUBSCRIPTIONS/S/operationresults/op", "/subscriptions/S/operationResults/op"),
    ("/providers/MICROSOFT.CONTAINERREGISTRY/Operations", "/providers/Microsoft.ContainerRegistry/operations"),
    ("/subscriptions/S/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/LISTCREDENTIALS",
     "/subscriptions/S/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/listCredentials"),
])
def test_canonical_path(given, expected):
    assert canonical_path(given) == expected


def test_skip_tokens_are_url_safe_and_reject_garbage():
    token = encode_token(("name+with/odd?chars",))
    assert all(c.isalnum() or c in "-_" for c in token)
    assert decode_token(token, 1) == ("name+with/odd?chars",)
    for bad in ("!!!", encode_token(("a", "b")), "eyJ4IjoxfQ"):
        with pytest.raises(InvalidSkipToken):
            decode_token(bad, 1)


def test_next_link_keeps_the_query_and_replaces_the_token():
    args = MultiDict([("api-version", "2025-11-01"), ("$filter", "x eq 'y'"), ("$skipToken", "old")])
    link = next_link("https://h:1", "/p", args, ("k",))
    assert link.startswith("https://h:1/p?api-version=2025-11-01&%24filter=x+eq+%27y%27&%24skipToken=")
    assert "old" not in link
    assert next_link("https://h:1", "/p", args, None) is None
    assert page_request(MultiDict([("$top", "5")]), 1, 100).size == 5


def test_merge_patch_replaces_lists_merges_objects_and_null_restores_default():
    base = with_defaults({"adminUserEnabled": True, "networkRuleSet": {"defaultAction": "Deny",
                                                                        "ipRules": [{"value": "1.2.3.4"}]}})
    patched = merge(base, {"networkRuleSet": {"ipRules": []}, "policies": {"exportPolicy": None},
                           "adminUserEnabled": None}, DEFAULT_PROPERTIES)
    assert patched["networkRuleSet"] == {"defaultAction": "Deny", "ipRules": []}
    assert patched["policies"]["exportPolicy"] == {"status": "enabled"}
    assert patched["adminUserEnabled"] is False
    assert base["networkRuleSet"]["ipRules"] == [{"value": "1.2.3.4"}], "merge must not change its input"


def test_settings_parse_and_reject(tmp_path):
    settings = Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path),
                                  "CONTROL_PLANE_LOCATIONS": "West Europe, eastus",
                                  "CONTROL_PLANE_DATABASE_URL": "postgresql://u@h/db"})
    assert settings.locations == ("westeurope", "eastus")
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.database_url != Settings.from_env({"CONTROL_PLANE_DATA_DIR": str(tmp_path)}).database_url
    with pytest.raises(SettingsError, match="no connection string for: westus"):
        Settings.from_env({"CONTROL_PLANE_LOCATIONS": "eastus,westus",
                           "CONTROL_PLANE_STORAGE": '{"eastus": "AccountName=a;AccountKey=b"}'})
    with pytest.raises(SettingsError, match="CONTROL_PLANE_PAGE_SIZE"):
        Settings.from_env({"CONTROL_PLANE_PAGE_SIZE": "many"})
    with pytest.raises(SettingsError, match="CONTROL_PLANE_TLS"):
        Settings.from_env({"CONTROL_PLANE_TLS": "maybe"})


def test_a_failed_unit_of_work_undoes_a_row_inserted_in_a_savepoint(tmp_path):
    """On SQLite a savepoint opened first used to be a transaction of its own, committed by its RELEASE."""
    import sqlalchemy as sa

    from control_plane.db import Database, insert_unless_duplicate
    from control_plane.models import Base, Tenant

    db = Database(f"sqlite:///{tmp_path / 'units.db'}")
    Base.metadata.create_all(db.engine)
    with db.session() as session:
        assert insert_unless_duplicate(session, Tenant(id="t-kept", display_name="kept"))
    with pytest.raises(RuntimeError), db.session() as session:
        session.scalar(sa.select(Tenant.id))  # a read first, as creates do, then the savepoint
        assert insert_unless_duplicate(session, Tenant(id="t-undone", display_name="undone"))
        assert not insert_unless_duplicate(session, Tenant(id="t-kept", display_name="again"))
        raise RuntimeError("the unit of work fails after the insert")
    with db.reading() as session:
        assert session.scalars(sa.select(Tenant.id)).all() == ["t-kept"]
    db.dispose()
