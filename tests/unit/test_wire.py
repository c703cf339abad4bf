"""The wire contract: every message survives encode → decode on both sides, statuses are a
closed set, and another protocol version is refused with a clear close reason."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from corral import jsontext, wire

ART = wire.ArtifactRef(sha256="a" * 64, sha1="b" * 40, size=10, fileName="x.zip")
AGENT_TO_PLANE: list[wire.Message] = [
    wire.Hello(agentVersion="1", hostname="h", addresses=[wire.Address(ip="10.0.0.5")],
               clusterPort=7000),
    wire.Report(revision=3, applications=[
        wire.ApplicationReport(name="web", deploymentId=2, status="STARTED", port=8080),
        wire.ApplicationReport(name="job", deploymentId=1, status="DEPLOYMENT_FAILED",
                               message="exit 1")],
        cluster=wire.ClusterReport(clusterId=1, primaryNodeId=4,
                                   members=[wire.ClusterMemberState(serverId=4, alive=True)])),
    wire.Heartbeat(),
    wire.LogLines(requestId="r1", lines=["a", "b"], done=True),
]
PLANE_TO_AGENT: list[wire.Message] = [
    wire.Desired(revision=3, serverId=4, serverName="web-1", applications=[
        wire.DesiredApplication(name="web", applicationId=9, deploymentId=2,
                                desiredStatus="STARTED", artifact=ART,
                                properties={"k": "v"})],
        cluster=wire.ClusterSpec(id=1, name="c", multicastEnabled=False, secret="s",
                                 members=[wire.ClusterMember(serverId=4, serverIp="10.0.0.5",
                                                             clusterPort=7000)])),
    wire.LogsRequest(requestId="r1", application="web", lines=5, follow=True),
    wire.LogsCancel(requestId="r1"),
]


@pytest.mark.parametrize("message", AGENT_TO_PLANE + PLANE_TO_AGENT,
                         ids=lambda m: type(m).__name__)
def test_round_trip(message: wire.Message) -> None:
    text = wire.encode(message)
    assert json.loads(text)["v"] == wire.VERSION
    assert wire.decode(text) == message


def test_statuses_are_a_closed_set() -> None:
    report = json.loads(wire.encode(AGENT_TO_PLANE[1]))
    report["applications"][0]["status"] = "PWNED"
    with pytest.raises(ValidationError):
        wire.decode(json.dumps(report))
    desired = json.loads(wire.encode(PLANE_TO_AGENT[0]))
    desired["applications"][0]["desiredStatus"] = "DELETED"
    with pytest.raises(ValidationError):
        wire.decode(json.dumps(desired))


@pytest.mark.parametrize("message", [AGENT_TO_PLANE[0], PLANE_TO_AGENT[0]],
                         ids=["agent-to-plane", "plane-to-agent"])
def test_another_version_is_refused_with_a_reason(message: wire.Message) -> None:
    newer = json.loads(wire.encode(message))
    newer["v"] = wire.VERSION + 1
    with pytest.raises(wire.UnsupportedVersion) as caught:
        wire.decode(json.dumps(newer))
    code, reason = wire.close_code_for(caught.value)
    assert code == wire.CLOSE_UNSUPPORTED_VERSION
    assert f"version {wire.VERSION + 1}" in reason and f"version {wire.VERSION}" in reason
    assert len(reason.encode()) <= 123  # what a websocket close frame can carry


@pytest.mark.parametrize("raw", ["not json", "[1]", '{"v": 1, "type": "nonsense"}',
                                 '{"v": 1, "type": "heartbeat", "extra": {}}'[:-1]])
def test_malformed_is_4400(raw: str) -> None:
    with pytest.raises(ValueError) as caught:
        wire.decode(raw)
    assert wire.close_code_for(caught.value)[0] == wire.CLOSE_BAD_MESSAGE


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_a_reported_port_is_a_port(port: int) -> None:
    report = json.loads(wire.encode(AGENT_TO_PLANE[1]))
    report["applications"][0]["port"] = port
    with pytest.raises(ValidationError):
        wire.decode(json.dumps(report))


def test_a_restart_names_a_window_that_paces_the_fleet() -> None:
    assert wire.reconnect_window(wire.restart_reason(10_000)) == round(
        10_000 / wire.RECONNECTS_PER_SECOND)
    assert wire.reconnect_window(wire.restart_reason(3)) == 1  # at least a second
    assert wire.reconnect_window("going away") == 1  # an older gateway's reason
    assert len(wire.restart_reason(10**9).encode()) <= 123  # fits a close frame


def _measurements(**server: object) -> dict[str, object]:
    sample = {"cpu": 5.0, "memoryUsed": 1, "memoryTotal": 2, "diskUsed": 1, "diskTotal": 2,
              "loadAverage": 0.1, "threads": 3, **server}
    return {"v": wire.VERSION, "type": "measurements", "server": sample, "applications": []}


@pytest.mark.parametrize("hostile", [
    _measurements(cpu=101.0),                      # more than all the cores
    _measurements(memoryUsed=-1),
    _measurements(threads=2**60),                  # beyond what a number may be
    _measurements(loadAverage="high"),
    {**_measurements(), "applications": [
        {"name": f"a{i}", "cpu": 0, "rss": 0, "threads": 0, "fds": 0, "restarts": 0,
         "uptime": 0} for i in range(1001)]},      # more instances than a message holds
    {**_measurements(), "applications": [
        {"name": "x" * 300, "cpu": 0, "rss": 0, "threads": 0, "fds": 0, "restarts": 0,
         "uptime": 0}]},
])
def test_hostile_measurements_are_malformed(hostile: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        wire.decode(json.dumps(hostile))
    assert wire.decode(json.dumps(_measurements())).type == "measurements"


def test_a_desired_message_joined_from_encoded_parts_is_what_desired_reads() -> None:
    """The control plane encodes each application once per batch and joins the parts
    (`wire.desired_text`); the agent reads the text with `Desired`, the one contract."""
    app = wire.DesiredApplication(
        name="shop \u2028 \"quoted\"", applicationId=4, deploymentId=2, desiredStatus="STARTED",
        artifact=wire.ArtifactRef(sha256="a" * 64, sha1="b" * 40, size=10, fileName="s.zip"),
        properties={"k": "v"})
    cluster = wire.ClusterSpec(id=9, name="c", multicastEnabled=False, secret="s",
                               members=[{"serverId": 1, "serverIp": "10.0.0.1"}])
    expected = wire.Desired(revision=7, serverId=1, serverName="web-1 \u00e9", cluster=cluster,
                            applications=[app, app], gateways=["wss://a:8443"],
                            metricsSeconds=15.0, renewCertificateWithin=12.5)
    part = jsontext.dumps(app.model_dump()).decode()
    text = wire.desired_text(
        revision=7, server_id=1, server_name="web-1 \u00e9",
        cluster=jsontext.dumps(cluster.model_dump()).decode(), applications=[part, part],
        tail=wire.fields_text(gateways=["wss://a:8443"], metricsSeconds=15.0, trustedCas=None)
        + wire.fields_text(renewCertificateWithin=12.5))
    assert wire.Desired.model_validate_json(text) == expected
    alone = wire.desired_text(revision=1, server_id=2, server_name="x", cluster=None,
                              applications=[])
    assert wire.Desired.model_validate_json(alone) == wire.Desired(revision=1, serverId=2,
                                                                   serverName="x")
    assert "trustedCas" not in text  # a field that is None is left out


def test_json_columns_read_what_the_standard_encoder_wrote() -> None:
    """Stored JSON is read with orjson, and what orjson refuses (NaN, integers past 64 bits,
    both written by the standard encoder) with the standard decoder: the same values."""
    import json

    for value in ({"a": [1, "b", None]}, {"big": 2**70}, {"nan": float("inf")}):
        text = json.dumps(value)
        assert jsontext.loads(text) == json.loads(text)
