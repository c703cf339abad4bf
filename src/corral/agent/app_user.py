"""Who applications run as. An agent running as root starts them as an unprivileged user
(`--app-user`, `nobody` unless told otherwise), so a compromised application cannot read the
agent's key or state, take over its connection or download other applications' artifacts."""

from __future__ import annotations

import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from corral.agent.layout import AgentError

log = logging.getLogger(__name__)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_WHEN_ROOT = "nobody"


@dataclass(frozen=True)
class AppUser:
    name: str
    uid: int
    gid: int

    @property
    def ids(self) -> tuple[int, int]:
        return self.uid, self.gid

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()

    def take(self, folder: Path) -> None:
        """Give an unpacked application's folder to the user it runs as."""
        if self.is_self:
            return
        for root, dirs, files in os.walk(folder):
            os.chown(root, self.uid, self.gid, follow_symlinks=False)
            for name in (*dirs, *files):
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)


    def check_reaches(self, folder: Path) -> None:
        """Fail at start, clearly, when a parent folder stops this user reaching the apps."""
        if self.is_self:
            return
        for parent in [folder.resolve(), *folder.resolve().parents]:
            st = parent.stat()
            if st.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif st.st_gid == self.gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                raise AgentError(
                    f"applications run as {self.name} cannot reach {folder}: {parent} is not "
                    f"searchable by that user. Keep the agent's folder where every user can "
                    f"traverse (e.g. /var/lib/corral-agent) or choose another --app-user.")


def resolve(name: str | None) -> AppUser:
    """The user applications run as: `name`, or when the agent is root and none is given,
    `nobody`. A non-root agent can only run them as itself."""
    root = os.geteuid() == 0
    if name is None:
        if not root:
            entry = pwd.getpwuid(os.geteuid())
            return AppUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
        name = DEFAULT_WHEN_ROOT
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise AgentError(f"--app-user {name!r}: no such user on this machine") from exc
    if not root and entry.pw_uid != os.geteuid():
        raise AgentError(f"--app-user {name!r}: only an agent running as root can run "
                         "applications as another user")
    if root and entry.pw_uid == 0:
        log.warning("applications run as root (--app-user %s): they can read the agent's key "
                    "and act as this server", name)
    return AppUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
