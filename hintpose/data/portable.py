"""Maths and image operations that give the same bits on every x86-64 CPU (for the generator).

numpy, OpenBLAS, glibc's libm and OpenCV pick code paths by the CPU they run on, and several
of them round differently in the last bits: numpy's float32 sine (SSE vs AVX2/AVX-512 loops),
OpenBLAS's dot product (a kernel per core type), glibc's sin/cos/exp/log/log1p (FMA variants
on CPUs that have FMA), OpenCV's resize (its SIMD dispatch and Intel IPP). Everything here
uses only

- integer arithmetic (Python ints, numpy integer arrays: exact, in any order);
- IEEE 754 basic operations (+, -, *, /, sqrt) on Python floats, or elementwise on numpy
  arrays, in a fixed order: each is correctly rounded, so SIMD width does not matter. No
  float reductions whose order a library chooses, no BLAS, no fused multiply-add (CPython
  and numpy's elementwise loops evaluate one operation at a time);
- exact conversions (floor, round to an integer or to float32, frexp, ldexp).

The sine, cosine, exponential and logarithm are fdlibm's algorithms in Python floats (within
an ulp of libm's); ``math.radians`` / ``math.degrees`` / ``math.sqrt`` are one basic operation
each and stay with ``math``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

# fdlibm constants: pi/2 in two parts (the first with 33 bits, so n * _PIO2_1 is exact)
_INVPIO2, _PIO2_1, _PIO2_1T = 6.36619772367581382433e-01, 1.57079632673412561417e+00, \
    6.07710050650619224932e-11
_S1, _S2, _S3, _S4, _S5, _S6 = (-1.66666666666666324348e-01, 8.33333333332248946124e-03,
                                -1.98412698298579493134e-04, 2.75573137070700676789e-06,
                                -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_C1, _C2, _C3, _C4, _C5, _C6 = (4.16666666666666019037e-02, -1.38888888888741095749e-03,
                                2.48015872894767294178e-05, -2.75573143513906633035e-07,
                                2.08757232129817482790e-09, -1.13596475577881948265e-11)
_LN2_HI, _LN2_LO, _INVLN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, \
    1.44269504088896338700e+00
_P1, _P2, _P3, _P4, _P5 = (1.66666666666666019037e-01, -2.77777777770155933842e-03,
                           6.61375632143793436117e-05, -1.65339022054652515390e-06,
                           4.13813679705723846039e-08)
_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01)
_SQRT_HALF = 0.70710678118654752440


def _ksin(x: float) -> float:
    z = x * x
    w = z * z
    r = _S2 + z * (_S3 + z * _S4) + z * w * (_S5 + z * _S6)
    return x + z * x * (_S1 + z * r)


def _kcos(x: float) -> float:
    z = x * x
    w = z * z
    r = z * (_C1 + z * (_C2 + z * _C3)) + w * w * (_C4 + z * (_C5 + z * _C6))
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + z * r)


def _reduce(x: float) -> tuple[int, float]:
    """(quadrant, remainder in [-pi/4, pi/4]) of ``x`` (meant for |x| < 1e6)."""
    if not abs(x) < 1e6:
        raise ValueError(f"argument {x} out of range")
    n = round(x * _INVPIO2)
    return n & 3, (x - n * _PIO2_1) - n * _PIO2_1T


def sin(x: float) -> float:
    q, r = _reduce(float(x))
    v = _ksin(r) if q & 1 == 0 else _kcos(r)
    return -v if q & 2 else v


def cos(x: float) -> float:
    q, r = _reduce(float(x))
    v = _kcos(r) if q & 1 == 0 else _ksin(r)
    return -v if (q + 1) & 2 else v


def exp(x: float) -> float:
    x = float(x)
    if not abs(x) < 700.0:
        raise ValueError(f"argument {x} out of range")
    k = round(x * _INVLN2)
    hi, lo = x - k * _LN2_HI, k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    return math.ldexp(1.0 - ((lo - (r * c) / (2.0 - c)) - hi), k)


def log(x: float) -> float:
    x = float(x)
    if not 0.0 < x < math.inf:
        raise ValueError(f"argument {x} out of range")
    m, k = math.frexp(x)
    if m < _SQRT_HALF:
        m, k = m * 2.0, k - 1
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6]))) + \
        w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


def dot(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Dot product of two short vectors, left to right (numpy's ``@`` calls BLAS)."""
    total = 0.0
    for x, y in zip(np.asarray(a, np.float64).tolist(), np.asarray(b, np.float64).tolist(),
                    strict=True):
        total = total + x * y
    return total


def normal(rng: np.random.Generator, loc: float = 0.0, scale: float = 1.0) -> float:
    """``rng.normal(loc, scale)`` (the same draw), its standard normal rounded to float32:
    numpy's sampler calls libm's log1p / exp in its rare tail and wedge cases, and the
    rounding hides a last-bit difference there (unless it straddles a float32 midpoint)."""
    return loc + scale * float(np.float32(rng.standard_normal()))


# --------------------------------------------------------------------------- images


@functools.lru_cache(maxsize=256)
def _taps(n_in: int, n_out: int, cubic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (n_out, k) and weights (n_out, k) of OpenCV's resize sampling
    (pixel centres aligned, borders replicated), bicubic with a = -0.75 or bilinear."""
    fx = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    sx = np.floor(fx)
    fx = fx - sx
    sx = sx.astype(np.int64)[:, None]
    if cubic:
        a, x1, g = -0.75, fx + 1.0, 1.0 - fx
        c0 = ((a * x1 - 5.0 * a) * x1 + 8.0 * a) * x1 - 4.0 * a
        c1 = ((a + 2.0) * fx - (a + 3.0)) * fx * fx + 1.0
        c2 = ((a + 2.0) * g - (a + 3.0)) * g * g + 1.0
        idx, wts = sx + np.arange(-1, 3), np.stack([c0, c1, c2, 1.0 - c0 - c1 - c2], 1)
    else:
        fx = np.where((sx[:, 0] < 0) | (sx[:, 0] >= n_in - 1), 0.0, fx)
        idx, wts = sx + np.arange(2), np.stack([1.0 - fx, fx], 1)
    idx = np.clip(idx, 0, n_in - 1)
    idx.setflags(write=False)  # cached: shared by every caller
    wts.setflags(write=False)
    return idx, wts


def resize_cubic(src: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (h, w, c) image to (height, width, c), bicubic with 11-bit integer weights in
    exact integer arithmetic (as OpenCV's INTER_CUBIC samples, minus its SIMD and IPP)."""
    out = src.astype(np.int32)  # |sums| <= 255 * (2048 * 1.375)**2 < 2**31
    for axis, n in ((0, height), (1, width)):
        idx, wts = _taps(out.shape[axis], n, cubic=True)
        iw = np.rint(wts * 2048.0).astype(np.int32)
        iw[:, 1] += 2048 - iw.sum(1)  # each output's weights sum to 2048 exactly
        shape = [1] * out.ndim
        shape[axis] = n
        out = sum(np.take(out, idx[:, k], axis=axis) * iw[:, k].reshape(shape)
                  for k in range(4))
    return np.clip((out + (1 << 21)) >> 22, 0, 255).astype(np.uint8)


def resize_linear(src: np.ndarray, width: int, height: int) -> np.ndarray:
    """float (h, w) array to float64 (height, width), bilinear as OpenCV's INTER_LINEAR
    samples; every output is w0 * a + w1 * b, evaluated elementwise."""
    out = src.astype(np.float64)
    i, w = _taps(out.shape[0], height, cubic=False)
    out = out[i[:, 0]] * w[:, :1] + out[i[:, 1]] * w[:, 1:]
    i, w = _taps(out.shape[1], width, cubic=False)
    return out[:, i[:, 0]] * w[:, 0] + out[:, i[:, 1]] * w[:, 1]


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 (h, w, c) image blurred by a separable Gaussian of ``sigma`` (OpenCV's kernel size
    for 8-bit images and its default border, reflect-101) with 10-bit integer weights."""
    c = (round(sigma * 6.0 + 1.0) | 1) // 2
    g = [exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(-c, c + 1)]
    total = 0.0
    for v in g:
        total = total + v
    w = [round(v / total * 1024.0) for v in g]
    w[c] += 1024 - sum(w)  # symmetric, sums to 1024: |sums| <= 255 * 1024**2 < 2**31
    h, wd = img.shape[:2]
    pad = np.pad(img, ((c, c), (c, c), (0, 0)), mode="reflect").astype(np.int32)
    rows = w[c] * pad[:, c:c + wd]
    for i in range(c):
        rows += w[i] * (pad[:, i:i + wd] + pad[:, 2 * c - i:2 * c - i + wd])
    out = w[c] * rows[c:c + h]
    for i in range(c):
        out += w[i] * (rows[i:i + h] + rows[2 * c - i:2 * c - i + h])
    return ((out + (1 << 19)) >> 20).astype(np.uint8)
