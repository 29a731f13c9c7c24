"""Image loading and preprocessing: anything a user hands us -> float32 NHWC.

    load_rgb(img) -> (H, W, 3) uint8       path, bytes, PIL.Image or array
    preprocess(rgb, meta) -> (H', W', 3) float32, as the model's metadata says

Paths and PIL images are EXIF-rotated and converted to RGB from grayscale,
RGBA/LA (alpha dropped), palette, 16-bit and CMYK. Images above Pillow's
decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS) are refused before
decoding. Pillow is imported on first use (not by `import seprt`: ~50 ms of a
cold start that only runs logits() on arrays).
"""
from __future__ import annotations

import io
import os
import struct
import sys
import warnings

import numpy as np

from .errors import ImageError


def _is_pil(img) -> bool:
    """A PIL image? (Without importing Pillow: an image can only exist once it is imported.)"""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(img, pil.Image)


def _check_size(im, what: str) -> None:
    from PIL import Image
    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.width * im.height > limit:
        raise ImageError(f"{what}: {im.width}x{im.height} pixels exceeds the decompression bomb limit "
                         f"of {limit} pixels (PIL.Image.MAX_IMAGE_PIXELS); downscale it first")


def _to_rgb(im):
    from PIL import Image
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grayscale: scale the full range to 8 bits, then gray -> RGB
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)      # transparent pixels become white
    return im.convert("RGB")


def _open(src, what: str):
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(src)
            _check_size(im, what)
            im = ImageOps.exif_transpose(im)
            im.load()
            return _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{what}: {e} Downscale it first (limit: PIL.Image.MAX_IMAGE_PIXELS).") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what}: not an image Pillow can read (empty, truncated header or another format)") from None
    except FileNotFoundError:
        raise ImageError(f"{what}: no such file") from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise ImageError(f"{what}: corrupt or truncated image ({e})") from None


def load_rgb(img) -> np.ndarray:
    """Any supported image -> (H, W, 3) uint8 RGB array.

    Args:
        img: a path (str or os.PathLike), encoded bytes, a binary file
            object, a PIL.Image, or an (H, W, 3) uint8 array (taken as RGB).
    Raises:
        ImageError: unreadable, corrupt, too large, or wrong shape/dtype.
    """
    if _is_pil(img):
        from PIL import ImageOps
        _check_size(img, "image")
        try:
            return np.asarray(_to_rgb(ImageOps.exif_transpose(img)))
        except (OSError, ValueError) as e:
            raise ImageError(f"image: cannot convert to RGB ({e})") from None
    if isinstance(img, (str, os.PathLike)):
        if os.path.isdir(img):
            raise ImageError(f"{img}: is a directory, not an image")
        return np.asarray(_open(img, str(img)))
    if isinstance(img, (bytes, bytearray, memoryview)):
        return np.asarray(_open(io.BytesIO(bytes(img)), "image bytes"))
    if hasattr(img, "read"):
        return np.asarray(_open(img, getattr(img, "name", "image file")))
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            if np.issubdtype(img.dtype, np.floating) and not np.all(np.isfinite(img)):
                raise ImageError("image array contains NaN or Inf")
            raise ImageError(f"image array must be uint8 (H, W, 3) RGB, got {img.dtype}; "
                             "for preprocessed float tensors call Model.logits(x) directly")
        if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
            raise ImageError(f"image array must have shape (H, W, 3), got {img.shape}")
        from PIL import Image
        if img.shape[0] * img.shape[1] > (Image.MAX_IMAGE_PIXELS or np.inf):
            raise ImageError(f"image array of {img.shape[0]}x{img.shape[1]} pixels exceeds "
                             "PIL.Image.MAX_IMAGE_PIXELS; downscale it first")
        return img
    raise ImageError(f"unsupported image type {type(img).__name__}: give a path, bytes, PIL.Image or uint8 array")


def resize(rgb: np.ndarray, meta: dict) -> np.ndarray:
    """Resize (H, W, 3) uint8 to the model's input size, bilinear.

    "stretch": the whole image to (h, w). "center_crop": shorter side to
    round(size / crop_fraction), then the central (h, w) crop.
    """
    from PIL import Image
    h, w = meta["preprocess.size"]
    im = Image.fromarray(rgb)
    if meta["preprocess.resize"] == "center_crop":
        cf = meta.get("preprocess.crop_fraction", 0.875)
        short = min(im.width, im.height)
        scale = max(h, w) / cf / short
        rw, rh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
        im = im.resize((rw, rh), Image.BILINEAR)
        left, top = (rw - w) // 2, (rh - h) // 2
        im = im.crop((left, top, left + w, top + h))
    elif im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    return np.asarray(im)


def normalize(rgb: np.ndarray, meta: dict) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 (x / 255 - mean) / std, channel order applied."""
    x = rgb.astype(np.float32) / np.float32(255.0)
    if meta.get("preprocess.channel_order", "RGB") == "BGR":
        x = x[:, :, ::-1]
    mean = np.asarray(meta["preprocess.mean"], np.float32)
    std = np.asarray(meta["preprocess.std"], np.float32)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def preprocess(img, meta: dict) -> np.ndarray:
    """Any supported image -> (H, W, 3) float32 model input (no batch axis)."""
    return normalize(resize(load_rgb(img), meta), meta)
