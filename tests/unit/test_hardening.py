"""Throttling, the zip end-record check, the sign-in's transaction discipline, and the Raft
unpickler: the pieces the attack suite (tests/security) relies on."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from corral.agent.archive import ArchiveRefused, unpack
from corral.agent.raft_guard import loads
from corral.bundle import ZipRefused, check_entries
from corral.config import Settings
from corral.controlplane import ControlPlane
from corral.domain import accounts
from corral.domain.throttle import RateLimit, Throttle
from corral.errors import TooManyRequests, Unauthenticated


def test_throttle_grows_and_forgets_on_success() -> None:
    t = Throttle(free=3, base_seconds=1, cap_seconds=4)
    assert t.failed("a") == 0 and t.failed("a") == 0
    assert t.failed("a") == 1 and t.retry_after("a") >= 1  # the third failure locks
    assert t.failed("a") == 2 and t.failed("a") == 4 and t.failed("a") == 4  # capped
    assert t.retry_after("b") == 0
    t.succeeded("a")
    assert t.retry_after("a") == 0


def test_throttle_stays_bounded() -> None:
    t = Throttle(max_keys=100)
    for i in range(1000):
        t.failed(f"k{i}")
    assert len(t._entries) == 100


def test_rate_limit() -> None:
    r = RateLimit(per_minute=2)
    assert r.take("x") == 0 and r.take("x") == 0 and r.take("x") > 0 and r.take("y") == 0
    assert RateLimit(per_minute=0).take("x") == 0


def _zip(entries: int = 1) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(entries):
            z.writestr(f"f{i}", "x")
    return buf.getvalue()


def test_zip_end_record_is_read_before_opening(tmp_path: Path) -> None:
    assert check_entries(io.BytesIO(_zip(3))) == 3
    with pytest.raises(ZipRefused, match="not a zip"):
        check_entries(io.BytesIO(b"hello"))
    data = bytearray(_zip(1))
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, 60000, 60000)
    with pytest.raises(ZipRefused, match="60000 entries"):
        check_entries(io.BytesIO(bytes(data)))
    (tmp_path / "bomb.zip").write_bytes(bytes(data))
    with pytest.raises(ArchiveRefused, match="entries"):
        unpack(tmp_path / "bomb.zip", tmp_path / "out")  # the agent refuses it too
    assert not (tmp_path / "out").exists()


def test_zip64_end_record(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", allowZip64=True) as z:
        z.writestr("a", "x")
    data = bytearray(buf.getvalue())
    at = data.rfind(b"PK\x05\x06")
    directory_size, directory_offset = struct.unpack_from("<II", data, at + 12)
    z64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 2**40, 2**40,
                      directory_size, directory_offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, at, 1)
    end = bytearray(data[at:])
    struct.pack_into("<HH", end, 8, 0xFFFF, 0xFFFF)
    forged = bytes(data[:at]) + z64 + locator + bytes(end)
    with pytest.raises(ZipRefused, match="entries"):
        check_entries(io.BytesIO(forged))


def test_password_check_runs_with_no_database_connection_held(tmp_path: Path) -> None:
    plane = ControlPlane.open(Settings(data_dir=tmp_path / "d", admin_password="pw-12345678"))
    plane.bootstrap()
    held: list[int] = []
    real = accounts.verify_secret

    def watching(stored: str | None, value: str) -> bool:
        held.append(plane.engine.pool.checkedout())
        return real(stored, value)

    accounts.verify_secret = watching  # type: ignore[assignment]
    try:
        assert plane.signin.login("admin", "pw-12345678", "t", 60)
        with pytest.raises(Unauthenticated):
            plane.signin.login("nobody-here", "pw-12345678", "t", 60)
    finally:
        accounts.verify_secret = real  # type: ignore[assignment]
        plane.close()
    assert held == [0, 0]  # the slow hash never holds a connection, let alone a transaction


def test_unknown_names_check_a_hash_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name costs an argon2 check like a wrong password (timings are in bench/)."""
    real = accounts._hasher
    checked: list[str] = []

    class Counting:
        def hash(self, secret: str) -> str:
            return real.hash(secret)

        def verify(self, stored: str, secret: str) -> bool:
            checked.append(stored)
            return real.verify(stored, secret)

    monkeypatch.setattr(accounts, "_dummy_hash", None)
    monkeypatch.setattr(accounts, "_hasher", Counting())
    assert accounts.verify_secret(None, "guess") is False
    assert len(checked) == 1 and checked[0].startswith("$argon2")  # a real hash was checked


def test_the_hash_profile_is_a_setting_and_old_hashes_still_verify(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "_hasher", accounts._hasher)  # put back afterwards
    accounts.use_password_hashing("rfc9106")
    made_before = accounts.hash_secret("pw-12345678")
    plane = ControlPlane.open(Settings(data_dir=tmp_path / "d", admin_password="pw-12345678",
                                       password_hash="owasp"))
    try:
        assert accounts.hash_secret("x").startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert made_before.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert accounts.verify_secret(made_before, "pw-12345678")
        assert not accounts.verify_secret(made_before, "pw-12345679")
    finally:
        plane.close()
    with pytest.raises(ValueError, match="password_hash"):
        Settings(data_dir=tmp_path / "e", password_hash="md5")  # type: ignore[arg-type]


def test_sign_in_throttle_answers_429(tmp_path: Path) -> None:
    plane = ControlPlane.open(Settings(data_dir=tmp_path / "d", admin_password="pw-12345678",
                                       login_free_failures=1))
    plane.bootstrap()
    try:
        with pytest.raises(Unauthenticated):
            plane.signin.login("admin", "wrong", "10.0.0.1", 60)
        with pytest.raises(TooManyRequests) as refused:  # the name is locked, from anywhere
            plane.signin.login("admin", "pw-12345678", "10.0.0.2", 60)
        assert refused.value.retry_after >= 1
        with pytest.raises(TooManyRequests):  # and so is the address, for any name
            plane.signin.login("someone", "whatever", "10.0.0.1", 60)
        assert plane.signin.failures_total == 1
    finally:
        plane.close()


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("true",)


def test_raft_unpickler_admits_plain_data_only() -> None:
    plain = {"type": "append_entries", "entries": [(b"\x01cmd", 3, 1)], "ids": {1, 2},
             "text": "é", "n": 2**70, "f": 1.5, "none": None, "t": (True, False)}
    assert loads(pickle.dumps(plain, 2)) == plain
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        loads(pickle.dumps(_Evil(), 2))
    with pytest.raises(pickle.UnpicklingError):
        loads(pickle.dumps(Path("/etc"), 2))


def test_sign_ins_never_tie_up_the_worker_threads(tmp_path: Path) -> None:
    """Twenty sign-ins at once: one hashes, a few wait, the rest get 429 at once."""
    import threading

    from corral.domain import signin

    plane = ControlPlane.open(Settings(data_dir=tmp_path / "d", admin_password="pw-12345678",
                                       login_free_failures=1000))
    plane.bootstrap()
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        try:
            plane.signin.login(f"user-{i}", "wrong-password", f"10.0.0.{i}", 60)
        except TooManyRequests:
            result = "busy"
        except Unauthenticated:
            result = "checked"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        plane.close()
    assert len(outcomes) == 20
    assert outcomes.count("checked") <= signin.MAX_WAITING + 1 + 2  # (threads start unevenly)
    assert outcomes.count("busy") >= 20 - signin.MAX_WAITING - 3
