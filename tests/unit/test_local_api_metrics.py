"""`POST $CORRAL_AGENT_URL/v1/metrics`: each application pushes through its own URL (the agent
knows who pushed; one cannot push for another), bad bodies get a clear 400/413, and the
counts are summed until the next measurement takes them."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from corral.agent import local_api
from corral.agent.measure import Pushed


class NoCluster:
    spec = None
    node = None


def client(pushed: Pushed) -> tuple[TestClient, str]:
    app = local_api.build(NoCluster(), "secret-prefix", 5000, pushed,  # type: ignore[arg-type]
                          lambda: ["billing", "shipping"])
    url = local_api.app_url("http://127.0.0.1:5000/secret-prefix", "billing")
    return TestClient(app, base_url="http://127.0.0.1:5000"), url.split(":5000", 1)[1]


def test_pushes_are_summed_per_application_until_taken() -> None:
    pushed = Pushed()
    c, base = client(pushed)
    assert pushed.take("billing") == (None, None, None)  # never pushed: no reading, not zero
    for body in ({"messages": 3, "errors": 1, "responseTimeMs": 10}, {"messages": 2,
                                                                       "responseTimeMs": 20}):
        assert c.post(f"{base}/v1/metrics", json=body).status_code == 204
    assert pushed.take("billing") == (5, 1, 15.0)
    assert pushed.take("billing") == (0, 0, None)  # pushed before: zero since
    # the cluster API answers on the application's URL too
    assert c.get(f"{base}/v1/cluster").json()["message"] == "this server is not in a cluster"


@pytest.mark.parametrize("body, status, words", [
    ([1], 400, "JSON object"),
    ({"messages": -1}, 400, "messages"),
    ({"errors": True}, 400, "errors"),
    ({"messages": 10**13}, 400, "messages"),
    ({"responseTimeMs": "fast"}, 400, "responseTimeMs"),
    ("x" * 5000, 413, "at most"),
])
def test_bad_pushes_are_refused(body: Any, status: int, words: str) -> None:
    pushed = Pushed()
    c, base = client(pushed)
    r = c.post(f"{base}/v1/metrics", json=body)
    assert r.status_code == status and words in r.json()["message"]
    assert pushed.take("billing") == (None, None, None)


def test_only_an_applications_own_url_takes_pushes() -> None:
    pushed = Pushed()
    c, _base = client(pushed)
    assert c.post("/secret-prefix/v1/metrics", json={"messages": 1}).status_code == 403
    assert c.post("/secret-prefix/a/0123456789abcdef01234567/v1/metrics",
                  json={"messages": 1}).status_code == 404
    assert c.post("/wrong-prefix/a/x/v1/metrics", json={"messages": 1}).status_code == 404
    assert pushed.take("billing") == (None, None, None)
