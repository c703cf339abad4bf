"""Artifacts fetched by checksum over the gateway's mutual TLS, verified before they are kept."""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from corral import wire
from corral.agent.layout import AgentDir
from corral.agent.reconciler import DownloadInterrupted


async def fetch(base: str, tls: ssl.SSLContext, layout: AgentDir, app: wire.DesiredApplication,
                destination: Path) -> None:
    """Download `app`'s artifact from the gateway at `base` into `destination`: written to a
    part file, synced, checked against its size and sha256, then renamed into place. A
    gateway that goes away mid-download is `DownloadInterrupted` (tried again), anything else
    the artifact's fault (`ValueError`)."""
    url = base + wire.ARTIFACT_PATH + app.artifact.sha256
    tmp = layout.artifacts / "tmp" / f"{app.artifact.sha256}.part"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    try:
        async with connect(url, ssl=tls, open_timeout=10,
                           max_size=wire.CHUNK_BYTES * 2, compression=None) as ws:
            with open(tmp, "wb") as out:
                try:
                    async for chunk in ws:
                        if isinstance(chunk, str):
                            raise ValueError("unexpected text frame in an artifact download")
                        digest.update(chunk)
                        size += len(chunk)
                        if size > app.artifact.size:
                            raise ValueError("artifact is larger than announced")
                        out.write(chunk)
                except ConnectionClosed:
                    pass
                out.flush()
                os.fsync(out.fileno())
            if ws.close_code in (None, 1001, 1006, wire.CLOSE_RESTARTING):
                # the gateway went away mid-download: not the deployment's fault
                raise DownloadInterrupted(f"artifact download broke off ({ws.close_code})")
            if ws.close_code != 1000:
                raise ValueError(f"artifact download refused: {ws.close_reason or ws.close_code}")
        if digest.hexdigest() != app.artifact.sha256:
            raise ValueError("downloaded artifact does not match its sha256 checksum")
        os.replace(tmp, destination)
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise DownloadInterrupted(f"artifact download failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
