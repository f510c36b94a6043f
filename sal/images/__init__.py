"""Images: disks (and kernels) pulled over HTTP(S), verified, and kept as read-only volumes VMs boot from.

base.py holds what an image is and its errors, download.py the download
(resumable), unpack.py the formats (raw, qcow2, bundle), catalog.py the names,
store.py the whole (ImageStore), functions.py what Rhai scripts call. Images
live on the storage SAL's pool: a node without storage has none.
"""

from sal.images.base import Image, ImageError, ImagePolicy, PullRequest, signed_message
from sal.images.store import ImageStore

__all__ = ["Image", "ImageError", "ImagePolicy", "ImageStore", "PullRequest", "signed_message"]
