"""Secure properties (ADR 0011): values that are written and never read back. They are sealed as
they arrive (`seal`), stay sealed in every row that holds a configuration (the application, each
deployment of its history, a group's clone on each server), are shown as names with masked
values (`masked`), and are opened only into the desired state of the servers that run the
application (`opened`)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from corral.db.models import Application, Deployment
from corral.domain.configuration import (
    PROPERTIES_SERVICE,
    SECURE_PROPERTIES,
    properties_of,
    secure_properties_of,
)
from corral.errors import InvalidInput
from corral.sealing import SecretBox

log = logging.getLogger(__name__)

MASK = "********"


def seal(given: dict[str, Any] | None, current: dict[str, Any] | None, box: SecretBox,
         name: str) -> dict[str, Any] | None:
    """The configuration to store for `given` (None: the current one is kept whole). Each
    secure value it names is sealed, a null removes one, and the others of `current` are kept:
    a redeploy need not send its secrets again."""
    if given is None:
        return None
    kept = secure_properties_of(current)
    for key, value in secure_properties_of(given).items():
        if value is None:
            kept.pop(key, None)
        elif value == MASK:  # an answer's configuration sent back whole: the value is kept
            if key not in kept:
                raise InvalidInput(f"secure property {key!r} has no value to keep; give its "
                                   "value, not the mask")
        elif key not in kept or _open(box, kept[key]) != value:
            kept[key] = box.seal(value)
    both = sorted(set(kept) & set(properties_of(given)))
    if both:
        raise InvalidInput(f"{both[0]!r} cannot be both a property and a secure property "
                           "(a secure property is removed by giving it as null)")
    stored = dict(given)
    service = dict(stored.get(PROPERTIES_SERVICE) or {})
    service.pop(SECURE_PROPERTIES, None)
    if kept:
        service.setdefault("applicationName", name)
        service[SECURE_PROPERTIES] = kept
    if service:
        stored[PROPERTIES_SERVICE] = service
    return stored


def given(current: dict[str, Any] | None, values: dict[str, str | None]) -> dict[str, Any]:
    """The current configuration with only these secure properties given (to `seal` against
    it): a redeploy that changes secrets and nothing else."""
    configuration = dict(current or {})
    service = dict(configuration.get(PROPERTIES_SERVICE) or {})
    service[SECURE_PROPERTIES] = dict(values)
    configuration[PROPERTIES_SERVICE] = service
    return configuration


def differences(before: dict[str, Any] | None, after: dict[str, Any] | None,
                box: SecretBox) -> list[str]:
    """The names of the secure properties added, removed or given another value."""
    old, new = secure_properties_of(before), secure_properties_of(after)
    return sorted(k for k in old.keys() | new.keys()
                  if k not in old or k not in new
                  or (old[k] != new[k] and _open(box, old[k]) != _open(box, new[k])))


def note(changed: list[str]) -> str:
    """What a deployment's history says of them: names, never a value."""
    return f"secure properties changed: {', '.join(changed)}"[:1000] if changed else ""


def names(configuration: dict[str, Any] | None) -> list[str]:
    return sorted(secure_properties_of(configuration))


def masked(configuration: dict[str, Any] | None) -> dict[str, Any]:
    """The configuration as answers show it: each secure property named, its value masked."""
    configuration = dict(configuration or {})
    secure = secure_properties_of(configuration)
    if secure:
        service = dict(configuration[PROPERTIES_SERVICE])
        service[SECURE_PROPERTIES] = dict.fromkeys(sorted(secure), MASK)
        configuration[PROPERTIES_SERVICE] = service
    return configuration


def opened(configuration: dict[str, Any] | None, box: SecretBox, application: str = ""
           ) -> dict[str, str]:
    """The values, for the desired state of the servers that run the application. One that no
    key of this control plane opens (a database given another's keys) is left out and said."""
    values: dict[str, str] = {}
    for key, sealed in secure_properties_of(configuration).items():
        value = _open(box, sealed)
        if value is None:
            log.error("secure property %s of application %s cannot be opened with this control "
                      "plane's keys; it is not sent", key, application)
        else:
            values[key] = value
    return values


def digest(salt: str, value: str) -> str:
    """What `digests` answers for a value: HMAC-SHA256 keyed with the salt, in hex."""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def digests(configuration: dict[str, Any] | None, box: SecretBox) -> dict[str, dict[str, str]]:
    """Each secure property's value as a salted digest, a new salt each time: enough to tell
    whether a candidate value is the stored one, nothing to read back."""
    salt = secrets.token_hex(16)
    return {k: {"salt": salt, "hmacSha256": digest(salt, v)}
            for k, v in opened(configuration, box).items()}


def resealed(configuration: dict[str, Any] | None, box: SecretBox) -> dict[str, Any] | None:
    """The configuration with each value sealed again with the box's newest key (a rotation);
    None when it holds no secure property."""
    secure = secure_properties_of(configuration)
    if not secure or configuration is None:
        return None
    service = dict(configuration[PROPERTIES_SERVICE])
    service[SECURE_PROPERTIES] = {k: box.reseal(v) for k, v in secure.items()}
    return {**configuration, PROPERTIES_SERVICE: service}


def _open(box: SecretBox, sealed: object) -> str | None:
    if not isinstance(sealed, str):
        return None
    try:
        return box.open(sealed)
    except ValueError:
        return None


def _holding_secrets(session: Session) -> list[Application | Deployment]:
    """The rows whose configuration names secure properties (the applications and every
    deployment of their history); the others are not read."""
    rows: list[Application | Deployment] = []
    for model in (Application, Deployment):
        stored = cast(model.configuration, String).like(f"%{SECURE_PROPERTIES}%")
        rows += session.scalars(select(model).where(stored))
    return rows


def reseal_everywhere(session: Session, box: SecretBox) -> int:
    """Every stored value sealed again with the box's newest key; how many rows changed."""
    changed = 0
    for row in _holding_secrets(session):
        again = resealed(row.configuration, box)
        if again is not None:
            row.configuration = again
            changed += 1
    session.flush()
    return changed


def seal_stored(session: Session, box: SecretBox) -> int:
    """Secure property values stored in clear, by a version that kept them as given (before
    ADR 0011), sealed now. Run at every start rather than once when the keys are made: a
    crash between making them and sealing would otherwise leave values in clear for good. It
    reads only the rows naming secure properties. How many rows changed."""
    changed = 0
    for row in _holding_secrets(session):
        values = secure_properties_of(row.configuration)
        if all(_sealed(v) for v in values.values()):
            continue
        service = dict(row.configuration[PROPERTIES_SERVICE])
        service[SECURE_PROPERTIES] = {k: v if _sealed(v) else box.seal(str(v))
                                      for k, v in values.items() if v is not None}
        row.configuration = {**row.configuration, PROPERTIES_SERVICE: service}
        changed += 1
    session.flush()
    return changed


def _sealed(value: object) -> bool:
    """Sealed text (a Fernet token: version 0x80, then a timestamp), whichever key sealed it."""
    return isinstance(value, str) and value.startswith("gAAAAA")
