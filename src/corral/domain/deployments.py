"""Deploy, redeploy, start/stop and delete an application, from the request's data to the
committed rows. The API and the console call these and nothing else, so each change has one
path: the same checks, the same order, the same refusals.

Every refusal that does not need the file comes before the upload is kept; the file is checked
as an application bundle (a zip with a Procfile) before it becomes addressable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.artifacts.multipart import UploadForm
from corral.db.models import Application, Artifact, Deployment, Target
from corral.domain import applications, history, narrative, rollouts, secure
from corral.domain.configuration import from_properties, parse_configuration
from corral.domain.identity import Principal, Scope
from corral.domain.names import as_id
from corral.domain.targets import every_target
from corral.errors import Conflict, InvalidInput, NotFound
from corral.sealing import SecretBox


@dataclass(frozen=True)
class Promotion:
    """The artifact of another application, named by ARM's `applicationSource`
    (`{"source": "HYBRID", "id": N}`): MuleSoft's promote script deploys an application of
    one environment to the next this way. The source may be in any environment of the
    organization that `reader` may use; its bytes are shared by their checksum, not copied."""

    source: object
    reader: Principal


def deploy(session: Session, scope: Scope, fields: Mapping[str, Any],
           upload: UploadForm | Promotion, *, box: SecretBox,
           properties: dict[str, str] | None = None,
           secure_properties: dict[str, str | None] | None = None, by: str = "") -> Application:
    """A new application from ARM's form: `artifactName`, `targetId`, `configuration` (JSON
    text or object) or, from the console, `properties` and `secure_properties`; and the file,
    or another application's artifact (never its secure properties: they stay in their
    environment). `by`: who, for the history. With a `rollout` (or the target's default) it
    reaches a group's or cluster's servers a batch at a time; the others run nothing of it
    until then. `box` seals the secure property values."""
    name = fields.get("artifactName")
    policy = rollouts.parse_policy(fields.get("rollout"))
    target = applications.check_deployable(session, scope, name, fields.get("targetId"))
    configuration = secure.seal(
        _configuration(fields.get("configuration"), properties, secure_properties, str(name)),
        None, box, str(name))
    artifact = _artifact(session, scope, upload, str(name))
    if artifact is None:
        raise InvalidInput("a file part with the artifact is required")
    app = applications.add(session, scope, name=str(name), target=target,
                              artifact=artifact, configuration=configuration or {})
    changed = secure.differences(None, configuration, box)
    first = history.begin(session, app, "deploy", by, note=secure.note(changed))
    narrative.describe(f"deploy {app.name} to {target.name} (deployment {first.number})"
                       + _told(changed))
    policy = policy or rollouts.policy_of(target.rollout_policy)
    if policy is not None and target.type != "SERVER":
        rollouts.start(session, app, None, first, policy)
    return app


def redeploy(session: Session, scope: Scope, app_id: int, fields: Mapping[str, Any] | None = None,
             upload: UploadForm | Promotion | None = None, *, box: SecretBox,
             secure_properties: dict[str, str | None] | None = None,
             by: str = "") -> Application:
    """A new deployment: the uploaded file (or another application's artifact) and the
    configuration where given, else the current ones again (a new deployment id either way, so
    every server restarts it). Secure properties are kept unless named: a value replaces one,
    a null removes it. `fields["rollout"]`, or the target's default, spreads it over the
    servers of a group or cluster (`domain/rollouts.py`)."""
    app = applications.get(session, scope, app_id, lock=True)
    policy = rollouts.parse_policy((fields or {}).get("rollout"))
    raw = (fields or {}).get("configuration")
    if raw in (None, "") and secure_properties:  # the console's: secrets alone, the rest kept
        raw = secure.given(app.configuration, secure_properties)
    configuration = secure.seal(_configuration(raw, None, None, app.name), app.configuration,
                                box, app.name)
    artifact = None if upload is None else _artifact(session, scope, upload, app.name)
    return _new_deployment(session, scope, app, "redeploy", by, policy, box, artifact=artifact,
                           configuration=configuration)


def _new_deployment(session: Session, scope: Scope, app: Application, kind: str, by: str,
                    policy: rollouts.Policy | None, box: SecretBox, *,
                    artifact: Artifact | None, configuration: dict[str, Any] | None,
                    rolled_back_to: int | None = None) -> Application:
    """The application's next deployment: recorded, and rolled out when a policy (given, or
    the target's) asks for it."""
    target = session.get_one(Target, app.target_id)
    policy = policy or rollouts.policy_of(target.rollout_policy)
    previous = session.scalars(select(Deployment).where(
        Deployment.application_id == app.id, Deployment.number == app.deployment_id)).first()
    before = dict(app.configuration or {})
    rollouts.supersede(session, app)
    app = applications.next_deployment(session, scope, app.id, artifact=artifact,
                                configuration=configuration)
    if kind == "rollback" and previous is not None:
        # after the servers (`next_deployment` bumped them), as a report that ends the
        # deployment takes them: the other order deadlocked with it on PostgreSQL
        history.end(session, previous, "ROLLED_BACK")
    changed = secure.differences(before, app.configuration, box)
    new = history.begin(session, app, kind, by, rolled_back_to=rolled_back_to,
                        note=secure.note(changed))
    narrative.describe(f"{'roll back' if kind == 'rollback' else kind} {app.name} "
                   f"(deployment {new.number})" + _told(changed))
    if policy is not None and previous is not None and target.type != "SERVER":
        rollouts.start(session, app, previous, new, policy)
    return app


def rollback(session: Session, scope: Scope, app_id: int, history_id: int | None = None, *,
             box: SecretBox, by: str = "", rollout: object = None) -> Application:
    """Deploy again the exact artifact and configuration of an earlier deployment (by default
    the latest successful one before the current), through the same rollout machinery; the
    current one is ROLLED_BACK."""
    app = applications.get(session, scope, app_id, lock=True)
    policy = rollouts.parse_policy(rollout)
    restored = history.rollback_target(session, app, history_id)
    return _new_deployment(session, scope, app, "rollback", by, policy, box,
                           artifact=restored.artifact,
                           configuration=dict(restored.configuration or {}),
                           rolled_back_to=restored.id)


def promote(session: Session, scope: Scope, app_id: int, history_id: int) -> Application:
    """A canary's servers are healthy: release the rest."""
    app = applications.get(session, scope, app_id, lock=True)
    rollouts.promote(session, app.id, history_id)
    narrative.describe(f"promote the rollout of {app.name}")
    return app


def cancel(session: Session, scope: Scope, app_id: int, history_id: int) -> Application:
    """Stop a rollout and return every server it updated to the previous deployment."""
    app = applications.get(session, scope, app_id, lock=True)
    rollouts.cancel(session, app.id, history_id)
    narrative.describe(f"cancel the rollout of {app.name}")
    return app


def set_desired_status(session: Session, scope: Scope, app_id: int, status: str,
                       rollout: object = None) -> Application:
    """Start (`STARTED`) or stop (`STOPPED`) on every server of the target; with a policy
    (given, or the group's or cluster's) `maxParallel` servers at a time."""
    app = applications.get(session, scope, app_id, lock=True)
    policy = rollouts.parse_policy(rollout)
    if rollouts.in_progress(session, app.id) is not None:
        raise Conflict(f"application {app.id} has a rollout in progress; promote, cancel or "
                       "let it finish first")
    old = app.desired_status
    app = applications.store_desired_status(session, scope, app_id, status)
    narrative.describe(f"{'start' if status == 'STARTED' else 'stop'} {app.name}")
    target = session.get_one(Target, app.target_id)
    policy = policy or rollouts.policy_of(target.rollout_policy)
    current = session.scalars(select(Deployment).where(
        Deployment.application_id == app.id, Deployment.number == app.deployment_id)).first()
    if policy is not None and old != status and current is not None and \
            target.type != "SERVER":
        rollouts.start_status(session, app, old, current, policy)
    return app


def delete(session: Session, scope: Scope, app_id: int) -> None:
    """No error when it does not exist (ARM answers 204 either way)."""
    applications.delete_application(session, scope, app_id)


def deployable_targets(session: Session, scope: Scope) -> list[dict[str, Any]]:
    """What a deploy may name: servers on their own, groups and clusters (a member server is
    reached through its group or cluster; `applications.resolve_target` refuses it)."""
    labels = {"SERVER": "server", "SERVER_GROUP": "group", "CLUSTER": "cluster"}
    return [{"id": t.id, "name": t.name, "kind": labels[t.type]}
            for t in every_target(session, scope, members=False)
            if applications.not_deployable(t) is None]


def _configuration(raw: object, properties: dict[str, str] | None,
                   secure_properties: dict[str, str | None] | None,
                   name: str) -> dict[str, Any] | None:
    """The configuration given: ARM's (`raw`), or the console's and CLI's properties."""
    if properties or secure_properties:
        if raw not in (None, ""):
            raise InvalidInput("give the configuration or properties, not both")
        return from_properties(name, properties or {}, secure_properties)
    if raw is None or raw == "":
        return None
    return parse_configuration(raw)


def _told(changed: list[str]) -> str:
    return f"; {secure.note(changed)}" if changed else ""


def _artifact(session: Session, scope: Scope, given: UploadForm | Promotion,
              name: str) -> Artifact | None:
    """The deployment's artifact: the upload kept, or the promoted application's shared; None
    when a form carries no file."""
    if isinstance(given, Promotion):
        return _promoted(session, scope, given, name)
    return _keep_artifact(session, scope, given, name) if given.file is not None else None


def _promoted(session: Session, scope: Scope, promotion: Promotion, name: str) -> Artifact:
    """A new artifact row over the source's checksum: the deployment's name is its own, the
    bytes are the source's (no copy, and the store keeps them while any row names them). An
    application the caller may not read is as unknown as one that does not exist."""
    source = promotion.source
    if not isinstance(source, Mapping):
        raise InvalidInput('applicationSource must be an object: {"source": "HYBRID", "id": N}')
    kind, app_id = source.get("source"), source.get("id")
    if not isinstance(kind, str) or kind.upper() != "HYBRID":
        raise InvalidInput(f"applicationSource.source {kind!r} is not supported; HYBRID names "
                           "an application of this organization")
    if isinstance(app_id, bool) or not isinstance(app_id, int | str) or \
            (isinstance(app_id, str) and not (app_id.isascii() and app_id.isdigit())):
        raise InvalidInput("applicationSource.id must be an application's integer id")
    source_id = as_id(app_id)
    found = session.get(Application, source_id) if source_id is not None else None
    if found is None or found.organization_id != scope.organization_id or \
            not promotion.reader.may_use_environment(found.environment_id):
        raise NotFound(f"application {app_id} not found")
    origin = found.artifact
    artifact = Artifact(organization_id=scope.organization_id, name=name,
                        file_name=origin.file_name, sha256=origin.sha256, sha1=origin.sha1,
                        size=origin.size)
    session.add(artifact)
    session.flush()
    return artifact


def _keep_artifact(session: Session, scope: Scope, upload: UploadForm, name: str) -> Artifact:
    upload.check_bundle()
    assert upload.file is not None
    blob = upload.file.commit()
    return applications.record_artifact(session, scope, name=name,
                                        file_name=upload.file_name, blob=blob)
