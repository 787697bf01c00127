"""OCI stores for bundles: a registry (via oras) or an image-layout folder, one protocol."""

from .base import BundleStore, ProgressFn, open_store, parse_location
from .layout import LayoutStore
from .registry import RegistryStore

__all__ = [
    "BundleStore",
    "LayoutStore",
    "ProgressFn",
    "RegistryStore",
    "open_store",
    "parse_location",
]
