"""Upgrading a database that holds deployments keeps them (on SQLite and PostgreSQL): the
schema before desired state per placement (revision 0005) to the current one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Engine,
    Integer,
    MetaData,
    Table,
    inspect,
    text,
)

from corral.db.migrate import HEAD, alembic_config, revision, upgrade
from corral.db.session import make_engine, make_sessionmaker
from corral.domain import reads
from corral.domain.desired_state import Told, messages
from corral.domain.identity import Scope


def _upgrade_to(engine: Engine, revision: str) -> None:
    with engine.connect() as conn:
        cfg = alembic_config(str(engine.url))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def _filler(column: Any) -> Any:
    if isinstance(column.type, JSON):
        return {}
    if isinstance(column.type, Boolean):
        return False
    if isinstance(column.type, Integer | BigInteger):
        return 0
    return "x"


def _insert(engine: Engine, meta: MetaData, table: str, **values: Any) -> None:
    """A row with the given values; every other required column gets a plain filler."""
    t: Table = meta.tables[table]
    row = {c.name: _filler(c) for c in t.columns
           if not c.nullable and c.autoincrement is not True and c.name not in values
           and c.server_default is None}
    with engine.begin() as conn:
        conn.execute(t.insert().values(**{**row, **values}))


def _start_empty(engine: Engine) -> None:
    """This worker's PostgreSQL database is shared by its tests (emptied, not dropped): start
    from no schema at all, as an installation of the older version would have."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))


def _organization_at(database_url: str, revision: str) -> tuple[Engine, MetaData]:
    """A database at an older `revision` holding organization "o" and its environment "e"."""
    engine = make_engine(database_url)
    _start_empty(engine)
    _upgrade_to(engine, revision)
    meta = MetaData()
    meta.reflect(engine)
    _insert(engine, meta, "organizations", id="o", name="org")
    _insert(engine, meta, "environments", id="e", organization_id="o", name="Production",
            type="production")
    return engine, meta


def test_upgrade_keeps_deployments(database_url: str) -> None:
    engine, meta = _organization_at(database_url, "0005")
    _insert(engine, meta, "targets", id=1, organization_id="o", environment_id="e",
            type="SERVER_GROUP", name="g")
    _insert(engine, meta, "server_groups", id=1)
    for sid in (2, 3):
        _insert(engine, meta, "targets", id=sid, organization_id="o", environment_id="e",
                type="SERVER", name=f"s{sid}")
        _insert(engine, meta, "servers", id=sid, status="RUNNING", server_group_id=1,
                addresses=[], runtime_information={}, desired_revision=7,
                desired_state={"serverId": sid, "applications": [{"name": "web"}]})
    _insert(engine, meta, "artifacts", id=1, organization_id="o", name="web",
            file_name="web.zip", sha256="a" * 64, sha1="b" * 40, size=10)
    _insert(engine, meta, "applications", id=1, organization_id="o", environment_id="e",
            name="web", target_id=1, artifact_id=1, desired_status="STARTED",
            configuration={"mule.agent.application.properties.service": {
                "applicationName": "web", "properties": {"greeting": "hi"}}},
            deployment_id=2)
    # one instance runs deployment 2; the other was still being redeployed to it
    _insert(engine, meta, "server_artifacts", id=1, application_id=1, server_id=2,
            deployment_id=2, desired_status="STARTED", last_reported_status="STARTED",
            discovered=False, port=8081)
    _insert(engine, meta, "server_artifacts", id=2, application_id=1, server_id=3,
            deployment_id=2, desired_status="STARTED", last_reported_status="DEPLOYING",
            discovered=False)

    upgrade(engine)

    columns = inspect(engine)
    assert "desired_state" not in {c["name"] for c in columns.get_columns("servers")}
    assert "desired_status" not in {c["name"] for c in columns.get_columns("server_artifacts")}
    with make_sessionmaker(engine)() as session:
        sent = messages(session, [2, 3], Told(secret_of=lambda cid, nonce: "secret"))
        for sid in (2, 3):
            revision, text = sent[sid]
            assert revision == 8  # moved on: every agent is sent its state again
            [app] = json.loads(text)["applications"]
            assert (app["name"], app["deploymentId"], app["desiredStatus"]) == \
                ("web", 2, "STARTED")
            assert app["artifact"]["sha256"] == "a" * 64
            assert app["properties"] == {"greeting": "hi"}
        shown = reads.application(session, Scope("o", "e"), 1)
    assert [(i["serverId"], i["lastReportedStatus"], i["deploymentId"])
            for i in shown["serverArtifacts"]] == [(2, "STARTED", 2), (3, "DEPLOYING", 2)]
    assert shown["serverArtifacts"][0]["port"] == 8081
    engine.dispose()


def test_ids_are_never_reused_after_the_upgrade(database_url: str) -> None:
    """Revision 0011 rebuilds SQLite's tables with AUTOINCREMENT, keeping every row, id and
    reference (foreign keys are off while it runs, so nothing cascades); from then on a
    deleted newest row's id is not given again, on either database."""
    engine, meta = _organization_at(database_url, "0010")
    for sid in (1, 2):
        _insert(engine, meta, "targets", id=sid, organization_id="o", environment_id="e",
                type="SERVER", name=f"s{sid}")
        _insert(engine, meta, "servers", id=sid, status="RUNNING", addresses=[],
                runtime_information={})
    _insert(engine, meta, "artifacts", id=1, organization_id="o", name="web",
            file_name="web.zip", sha256="a" * 64, sha1="b" * 40, size=10)
    _insert(engine, meta, "applications", id=1, organization_id="o", environment_id="e",
            name="web", target_id=2, artifact_id=1, desired_status="STARTED",
            configuration={}, deployment_id=1)
    _insert(engine, meta, "server_artifacts", id=1, application_id=1, server_id=2,
            deployment_id=1, last_reported_status="STARTED", discovered=False)
    if engine.dialect.name == "postgresql":  # ids given explicitly: move the sequences on
        with engine.begin() as conn:
            for table in ("targets", "applications", "server_artifacts", "artifacts"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))

    upgrade(engine)

    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM servers")).scalar() == 2
        row = conn.execute(text("SELECT last_reported_status, serving FROM server_artifacts "
                                "WHERE id = 1 AND application_id = 1 AND server_id = 2")).one()
        assert row[0] == "STARTED" and bool(row[1]) is True  # what it reported serves
        conn.execute(text("DELETE FROM applications WHERE id = 1"))
        new = conn.execute(text(
            "INSERT INTO applications (organization_id, environment_id, name, target_id, "
            "artifact_id, desired_status, configuration, deployment_id, time_created, "
            "time_updated) VALUES ('o', 'e', 'next', 2, 1, 'STARTED', '{}', 1, 0, 0) "
            "RETURNING id")).scalar()
        assert new == 2  # not 1, the deleted newest
    engine.dispose()


def test_head_is_the_scripts_newest_revision(tmp_path: Path) -> None:
    """`migrate.HEAD` lets a database at the newest revision start without Alembic: it must
    name the scripts' head, and a database there must read as being there."""
    from alembic.script import ScriptDirectory

    config = alembic_config(f"sqlite:///{tmp_path / 'c.db'}")
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    assert revision(engine) is None
    upgrade(engine)
    assert revision(engine) == HEAD
    engine.dispose()
