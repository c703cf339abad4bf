"""Content-addressed artifact storage (sha256): an interface and its implementations."""

from corral.artifacts.local import LocalArtifactStore
from corral.artifacts.store import ArtifactStore, BlobInfo, BlobWriter

__all__ = ["ArtifactStore", "BlobInfo", "BlobWriter", "LocalArtifactStore"]
