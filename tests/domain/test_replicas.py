"""What replicas rely on in the database: revisions compared for the agents a replica holds,
which replica holds a server, a departure that does not undo another replica's hold, the
leader's upkeep, change notices sent only with a commit (PostgreSQL), and a stopping replica
letting go of every agent it holds."""

from __future__ import annotations

import asyncio
import contextlib
import json

import psycopg
import pytest
from sqlalchemy import select, update

from corral import wire
from corral.controlplane import NOTICE_CHANNEL, ControlPlane
from corral.db.models import AccessToken, Replica, Server, now_ms
from corral.db.session import in_worker, libpq_url, transaction
from corral.domain import agents, desired_state, replicas
from corral.gateway.hellos import HelloBatcher, Stopping
from corral.pki.authority import ServerIdentity
from tests.api.conftest import Api


def test_revisions_of_the_agents_held(api: Api, plane: ControlPlane) -> None:
    ids = [api.register(f"rev-{i}") for i in range(3)]
    with transaction(plane.sessions) as s:
        before = agents.revisions(s, [*ids, 999_999])
        desired_state.changed(s, servers=[ids[1]])
    assert sorted(before) == sorted(ids)  # a deleted (unknown) server is absent
    with transaction(plane.readers) as s:
        after = agents.revisions(s, ids)
    assert after[ids[1]] == before[ids[1]] + 1
    assert after[ids[0]] == before[ids[0]]


def test_which_replica_holds_a_server_and_who_may_let_it_go(api: Api,
                                                            plane: ControlPlane) -> None:
    sid = api.register("held")
    with transaction(plane.sessions) as s:
        replicas.announce(s, "replica-a", "wss://a.internal:8443")
        replicas.announce(s, "replica-b", "wss://b.internal:8443")
        agents.seen(s, [sid], "replica-a")
    with transaction(plane.readers) as s:
        assert replicas.holder(s, sid) == ("replica-a", "wss://a.internal:8443")
    with transaction(plane.sessions) as s:
        agents.seen(s, [sid], "replica-b")  # the agent moved to B
        agents.disconnected(s, [sid], "replica-a")  # A, stopping, lets go of what it held
    with transaction(plane.readers) as s:
        assert s.get_one(Server, sid).status == "RUNNING"  # B's hold is untouched
        assert replicas.holder(s, sid) == ("replica-b", "wss://b.internal:8443")
    with transaction(plane.sessions) as s:
        agents.disconnected(s, [sid], "replica-b")
    with transaction(plane.readers) as s:
        server = s.get_one(Server, sid)
        assert (server.status, server.replica_id) == ("DISCONNECTED", None)
        assert replicas.holder(s, sid) is None


def test_upkeep_forgets_long_expired_tokens_and_gone_replicas(api: Api,
                                                             plane: ControlPlane) -> None:
    old = now_ms() - replicas.KEEP_EXPIRED_MS - 1000
    with transaction(plane.sessions) as s:
        replicas.announce(s, "gone", "wss://gone:8443")
        replicas.announce(s, "here", "wss://here:8443")
        s.execute(update(Replica).where(Replica.id == "gone").values(seen_at=old))
        live = s.scalars(select(AccessToken)).all()
        s.add(AccessToken(token_hash="e" * 64, organization_id=live[0].organization_id,
                          user_id=live[0].user_id, expires_at=old))
    with transaction(plane.sessions) as s:
        done = replicas.upkeep(s)
    assert done["replicas"] == 1 and done["access_tokens"] == 1
    with transaction(plane.readers) as s:
        assert s.get(Replica, "here") is not None
        assert s.get(AccessToken, "e" * 64) is None
    assert api.get("/servers").status_code == 200  # live tokens kept


def test_a_change_is_announced_to_other_replicas_only_when_it_commits(
        api: Api, plane: ControlPlane) -> None:
    if plane.engine.dialect.name != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's; one SQLite process has no one to tell")
    sid = api.register("announced")
    with psycopg.connect(libpq_url(plane.engine), autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTICE_CHANNEL}")
        with pytest.raises(RuntimeError), transaction(plane.sessions) as s:
            desired_state.changed(s, servers=[sid])
            raise RuntimeError("rolled back")
        with transaction(plane.sessions) as s:
            desired_state.changed(s, servers=[sid])
        heard = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=2)]
    assert heard == [{"r": plane.replica_id, "c": [sid], "d": [], "k": False, "a": True}]


def test_a_stopping_replica_lets_go_of_a_hello_it_was_storing(api: Api,
                                                             plane: ControlPlane) -> None:
    """A hello whose transaction is running when the gateway stops: cancelling the batcher
    leaves its worker thread to commit the agent RUNNING, held by this replica, after which
    the handler is told `Stopping` and never lists the connection. The gateway waits for that
    commit (`settled`), then lets go of every agent it holds (`let_go`); the server used to
    read RUNNING until the silence sweep."""
    sid, other = api.register("late"), api.register("elsewhere")
    with transaction(plane.sessions) as s:
        server = s.get_one(Server, sid)
        who = ServerIdentity(server_id=sid, organization_id=api.org_id,
                             environment_id=server.environment_id,
                             serial=server.certificate_serial)
        agents.seen(s, [other], "another-replica")

    async def stop_while_storing() -> None:
        batcher = HelloBatcher(plane)
        run = asyncio.create_task(batcher.run())
        blocker = plane.sessions()  # holds the server's row (on SQLite: the writers' turn)
        blocker.execute(update(Server).where(Server.id == sid).values(last_seen=now_ms()))
        answer = asyncio.create_task(batcher.admit(who, wire.Hello(agentVersion="1",
                                                                   hostname="h")))
        async def storing() -> None:
            while batcher._storing is None:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(storing(), 30)  # the batch's transaction has begun
        run.cancel()  # as `Gateway.stop` does
        with contextlib.suppress(asyncio.CancelledError):
            await run
        with pytest.raises(Stopping):
            await answer

        async def release() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(blocker.commit)

        releasing = asyncio.create_task(release())
        await batcher.settled()
        await in_worker(plane.sessions, agents.let_go, plane.replica_id)
        await releasing
        blocker.close()

    asyncio.run(stop_while_storing())
    with transaction(plane.readers) as s:
        late, elsewhere = s.get_one(Server, sid), s.get_one(Server, other)
        assert (late.status, late.replica_id) == ("DISCONNECTED", None)
        assert (elsewhere.status, elsewhere.replica_id) == ("RUNNING", "another-replica")
