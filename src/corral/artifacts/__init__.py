"""Content-addressed artifact storage (sha256): an interface and its implementations."""

from corral.artifacts.store import ArtifactStore, BlobInfo, BlobWriter
from corral.artifacts.local import LocalArtifactStore

__all__ = ["ArtifactStore", "BlobInfo", "BlobWriter", "LocalArtifactStore"]
