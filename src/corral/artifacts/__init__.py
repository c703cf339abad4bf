"""Content-addressed artifact storage (sha256): an interface and its implementations."""

from corral.artifacts.database import DatabaseArtifactStore
from corral.artifacts.local import LocalArtifactStore
from corral.artifacts.s3 import S3ArtifactStore
from corral.artifacts.store import ArtifactStore, BlobInfo, BlobWriter

__all__ = ["ArtifactStore", "BlobInfo", "BlobWriter", "DatabaseArtifactStore",
           "LocalArtifactStore", "S3ArtifactStore"]
