"""Secure property values: sealed, opened, masked, sealed again by a rotation (ADR 0011), and
the agent's record of them sealed too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from corral.agent.layout import AgentDir
from corral.agent.reconciler import Reconciler
from corral.domain import secure
from corral.errors import InvalidInput
from corral.pki.keys import new_key_request, write_private
from corral.sealing import MasterKey, Sealer, SecretBox
from corral.wire import Desired

SERVICE = "mule.agent.application.properties.service"


def _given(**values: str | None) -> dict[str, object]:
    return {SERVICE: {"applicationName": "shop", "properties": {"greeting": "hi"},
                      "secureProperties": values}}


def test_values_are_sealed_kept_replaced_and_removed() -> None:
    box = SecretBox([SecretBox.new_key()])
    first = secure.seal(_given(a="one", b="two"), None, box, "shop")
    assert first is not None
    stored = first[SERVICE]["secureProperties"]
    assert set(stored) == {"a", "b"} and "one" not in json.dumps(first)
    assert secure.opened(first, box) == {"a": "one", "b": "two"}
    # named: replaced; null: removed; the mask: kept; unnamed: kept
    second = secure.seal(_given(a="uno", b=None), first, box, "shop")
    assert secure.opened(second, box) == {"a": "uno"}
    assert secure.differences(first, second, box) == ["a", "b"]
    third = secure.seal(_given(a=secure.MASK), second, box, "shop")
    assert third is not None and third[SERVICE]["secureProperties"] == \
        second[SERVICE]["secureProperties"]  # the very same sealed text: nothing changed
    assert secure.differences(second, third, box) == []
    assert secure.seal(None, third, box, "shop") is None  # no configuration: all kept
    with pytest.raises(InvalidInput, match="not the mask"):
        secure.seal(_given(c=secure.MASK), third, box, "shop")


def test_answers_show_names_and_masks_only() -> None:
    box = SecretBox([SecretBox.new_key()])
    stored = secure.seal(_given(token="t0ps3cret"), None, box, "shop")
    shown = secure.masked(stored)
    assert shown[SERVICE]["secureProperties"] == {"token": "********"}
    assert shown[SERVICE]["properties"] == {"greeting": "hi"}
    assert "t0ps3cret" not in json.dumps(shown) and secure.names(stored) == ["token"]
    assert secure.note(["a", "b"]) == "secure properties changed: a, b"
    assert secure.note([]) == ""


def test_a_rotation_seals_again_and_only_the_new_key_is_needed() -> None:
    old = SecretBox([SecretBox.new_key()])
    stored = secure.seal(_given(a="one"), None, old, "shop")
    both = SecretBox([SecretBox.new_key(), *old.keys])
    again = secure.resealed(stored, both)
    assert again is not None and again != stored
    assert secure.opened(again, SecretBox(both.keys[:1])) == {"a": "one"}
    assert secure.opened(stored, SecretBox(both.keys[:1])) == {}  # the old text needs the old key
    assert secure.resealed({SERVICE: {"properties": {}}}, both) is None


def test_a_value_sealed_by_another_key_is_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    stored = secure.seal(_given(a="one"), None, SecretBox([SecretBox.new_key()]), "shop")
    assert secure.opened(stored, SecretBox([SecretBox.new_key()]), "shop") == {}
    assert "secure property a of application shop cannot be opened" in caplog.text
    assert "one" not in caplog.text


def test_other_sealed_secrets_do_not_open_as_values() -> None:
    """The box has keys of its own: a sealed registration token or master-key row pasted in a
    value's place opens to nothing."""
    key = Fernet.generate_key()
    box = SecretBox([SecretBox.new_key()])
    with pytest.raises(ValueError):
        box.open(Sealer(key).seal("a registration token"))
    with pytest.raises(ValueError):
        box.open(MasterKey("m" * 40).seal(b"a CA key"))


def test_keys_are_kept_in_a_private_file(tmp_path: Path) -> None:
    box = SecretBox.load_or_create(tmp_path)
    assert (tmp_path / SecretBox.FILE).stat().st_mode & 0o777 == 0o600
    assert SecretBox.load_or_create(tmp_path).keys == box.keys
    two = SecretBox([SecretBox.new_key(), *box.keys])
    assert SecretBox.parse(two.dump()) == two.keys


def test_the_agent_keeps_values_only_sealed(tmp_path: Path) -> None:
    layout = AgentDir(tmp_path)
    layout.make_dirs()
    write_private(layout.key, new_key_request("web-1").key_pem)
    rec = Reconciler(layout, None, 7)  # type: ignore[arg-type]  # nothing is fetched here
    rec.desired = Desired.model_validate({
        "revision": 1, "serverId": 7, "serverName": "web-1", "applications": [{
            "name": "shop", "applicationId": 1, "deploymentId": 1, "desiredStatus": "STOPPED",
            "artifact": {"sha256": "0" * 64, "size": 1},
            "secureProperties": {"db.password": "hunter2"}}]})
    assert "hunter2" not in repr(rec.desired)
    rec.save()
    record = layout.state.read_text()
    assert "hunter2" not in record and "db.password" in record
    assert layout.state.stat().st_mode & 0o777 == 0o600
    saved = json.loads(record)["desired"]["applications"][0]["secureProperties"]["db.password"]
    assert layout.unseal(saved) == "hunter2"
