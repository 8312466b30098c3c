"""Image files: decoding with a pixel limit checked from the header first, completeness.

Every image the pipeline reads (dataset images, the demo's picture) goes through
:func:`read_image`: an image of more than ``MAX_IMAGE_PIXELS`` pixels is refused from its
file's header (Pillow reads the size without decoding), so a small file that claims or holds
a huge picture is one DataError naming it, not gigabytes of memory or an OpenCV traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG

import cv2
import numpy as np

from hintpose.errors import DataError

#: Most pixels an image may have (8192 x 8192; decoded, 200 MB as BGR; COCO's photos are at
#: most 640 on a side): larger ones are refused from their header, before they are decoded.
MAX_IMAGE_PIXELS = 8192 * 8192
#: Decoded images read_image returns copies of instead of decoding the file (preloaded_image).
_PRELOADED: dict[str, np.ndarray] = {}
_PIL_LOCK = threading.Lock()


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header, nothing decoded (Pillow); None for a file
    Pillow cannot identify."""
    from PIL import Image, UnidentifiedImageError

    with _PIL_LOCK:  # Pillow's own, lower limit is a warning or error: ours is checked here
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as image:
                return image.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


@functools.lru_cache(maxsize=1 << 16)
def _header_size(path: str, nbytes: int, mtime_ns: int) -> tuple[int, int] | None:
    """:func:`image_size`, remembered per file version (training reads each image often)."""
    return image_size(path)


def check_pixels(width: int, height: int, where: str) -> None:
    """A DataError starting with ``where`` for an image over ``MAX_IMAGE_PIXELS`` pixels."""
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{where} is {width}x{height} pixels, more than the limit of "
                        f"{MAX_IMAGE_PIXELS:,} (8192x8192)")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to BGR uint8 (H, W, 3); a missing or undecodable file, or one over
    ``MAX_IMAGE_PIXELS`` pixels (checked from its header first), is a DataError."""
    if _PRELOADED:
        pixels = _PRELOADED.get(os.path.realpath(path))
        if pixels is not None:
            return pixels.copy()
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise DataError(f"{path}: image file not found")
    size = _header_size(str(path), stat.st_size, stat.st_mtime_ns)
    if size is not None:
        check_pixels(*size, f"{path}: image")
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. a header claiming more pixels than OpenCV decodes
        image = None
    if image is None:
        raise DataError(f"{path}: image does not decode")
    check_pixels(image.shape[1], image.shape[0], f"{path}: image")
    return image


@contextlib.contextmanager
def preloaded_image(path: str | Path, pixels: np.ndarray) -> Iterator[None]:
    """While active, :func:`read_image` of ``path`` returns a copy of ``pixels`` instead of
    decoding the file again (the demo decodes its one, possibly large, image once)."""
    key = os.path.realpath(path)
    _PRELOADED[key] = pixels
    try:
        yield
    finally:
        _PRELOADED.pop(key, None)


def complete_image_file(path: Path) -> bool:
    """False for a JPEG without its end marker or a PNG without its end chunk: files that
    OpenCV still decodes (with a warning), the missing part grey."""
    suffix = path.suffix.lower()
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 64))
        tail = f.read()
    if suffix in (".jpg", ".jpeg"):
        return tail.rstrip(b"\x00\r\n \t").endswith(b"\xff\xd9")
    if suffix == ".png":
        return b"IEND" in tail[-12:]
    return True
