"""Synthetic crowded people in COCO keypoint format, deterministic from a seed.

A person is the orthographic projection of a simple 3D body: a pelvis root, sampled bone
lengths, shoulder/elbow/hip/knee angles in human ranges, a yaw that sets the facing (front,
back, left or right profile; "left" = the person's left side towards the camera) and an
in-plane lean. Body parts are drawn far to near with OpenCV into a per-person label map;
persons are composited back to front (painter's order) into an owner map, which gives each
person's visible mask and each joint's visibility: v=2 visible, v=1 labeled but hidden (by a
nearer person or by the person's own nearer limbs), v=0 unlabeled (face points turned away)
or outside the image (then x=y=0, as in COCO).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from hintpose.data.crowd import crowd_index
from hintpose.data.keypoints import person_category
from hintpose.errors import ConfigError, DataError

(NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI,
 L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK) = range(17)

# Body-part ids of the per-person label map (0 = background); pairs are (left, right).
TORSO_UP, TORSO_LOW, NECK, HEAD = 1, 2, 3, 4
UPPER_ARM, FOREARM, HAND = (5, 6), (7, 8), (9, 10)
THIGH, SHIN, FOOT = (11, 12), (13, 14), (15, 16)
NUM_PARTS = 17

#: Parts a joint belongs to: a joint is self-visible when its pixel shows one of them.
_JOINT_PARTS: dict[int, tuple[int, ...]] = {
    NOSE: (HEAD,), L_EYE: (HEAD,), R_EYE: (HEAD,), L_EAR: (HEAD,), R_EAR: (HEAD,),
    L_SHO: (TORSO_UP, UPPER_ARM[0]), R_SHO: (TORSO_UP, UPPER_ARM[1]),
    L_ELB: (UPPER_ARM[0], FOREARM[0]), R_ELB: (UPPER_ARM[1], FOREARM[1]),
    L_WRI: (FOREARM[0], HAND[0]), R_WRI: (FOREARM[1], HAND[1]),
    L_HIP: (TORSO_LOW, THIGH[0]), R_HIP: (TORSO_LOW, THIGH[1]),
    L_KNE: (THIGH[0], SHIN[0]), R_KNE: (THIGH[1], SHIN[1]),
    L_ANK: (SHIN[0], FOOT[0]), R_ANK: (SHIN[1], FOOT[1]),
}
_OWNS = np.zeros((17, NUM_PARTS), dtype=bool)
for _j, _parts in _JOINT_PARTS.items():
    _OWNS[_j, list(_parts)] = True

FACINGS = ("front", "back", "left", "right")
_FACING_PROB = (0.4, 0.24, 0.18, 0.18)
_FACING_YAW = {"front": 0.0, "left": 90.0, "back": 180.0, "right": 270.0}
_YAW_JITTER = {"front": 30.0, "back": 30.0, "left": 20.0, "right": 20.0}
#: Face points an annotator cannot see for each facing (COCO leaves them unlabeled).
UNLABELED_BY_FACING: dict[str, tuple[int, ...]] = {
    "front": (), "back": (NOSE, L_EYE, R_EYE), "left": (R_EYE, R_EAR), "right": (L_EYE, L_EAR),
}

_SKIN = np.array([[200, 215, 245], [160, 190, 230], [120, 160, 215], [90, 125, 180],
                  [60, 90, 140], [45, 65, 100]], dtype=np.float32)  # BGR
_HAIR = np.array([[20, 20, 25], [30, 45, 70], [40, 70, 110], [40, 150, 205], [150, 150, 150],
                  [25, 35, 120]], dtype=np.float32)  # black, browns, blond, grey, red
_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel accurate drawing
_ONE = 1 << _SHIFT
# Grouping (tuned so the default val split populates all three CrowdPose levels): in a grouped
# image a person stays alone with probability _ALONE * (1 - crowding); neighbours in a group
# stand U(0.03, 0.03 + spread) heights apart, spread = _SPREAD0 + _SPREAD1 * (1 - crowding) * U.
_ALONE, _SPREAD0, _SPREAD1 = 1.2, 0.25, 0.5
_PAIR_STD = math.sqrt(2 * (256**2 - 1) / 12)  # std of the sum of two uniform bytes


@dataclass(frozen=True)
class SyntheticConfig:
    """``dataset.synthetic``: image size, number, size and grouping of persons, image noise."""

    image_width: int = field(default=320, metadata={"min": 64, "max": 4096})
    image_height: int = field(default=256, metadata={"min": 64, "max": 4096})
    #: Persons drawn per image (COCO's keypoint metric scores at most 20 per image).
    persons_min: int = field(default=2, metadata={"min": 1, "max": 20})
    persons_max: int = field(default=7, metadata={"min": 1, "max": 20})
    #: Probability that an image arranges its persons in overlapping groups; also the share
    #: of that image's persons who join a group and how tightly groups pack.
    crowding: float = field(default=0.7, metadata={"min": 0.0, "max": 1.0})
    group_size_max: int = field(default=5, metadata={"min": 2, "max": 20})
    #: Standing height of a person as a fraction of the image height (log-uniform).
    person_height_min: float = field(default=0.25, metadata={"gt": 0.0, "max": 4.0})
    person_height_max: float = field(default=1.4, metadata={"gt": 0.0, "max": 4.0})
    #: Probability that a person (or a group) is placed partly outside the image.
    out_of_frame: float = field(default=0.15, metadata={"min": 0.0, "max": 1.0})
    #: Mean number of background distractor shapes (some of them limb-like bars).
    distractors: int = field(default=14, metadata={"min": 0, "max": 500})
    #: Gaussian blur sigma and pixel-noise std (grey levels), each scaled per image by a
    #: random factor in [0.6, 1.4] / [0.5, 1.5].
    blur_sigma: float = field(default=0.7, metadata={"min": 0.0, "max": 10.0})
    noise_std: float = field(default=4.0, metadata={"min": 0.0, "max": 100.0})
    jpeg_quality: int = field(default=92, metadata={"min": 1, "max": 100})
    #: Persons with fewer visible pixels are not annotated (they still occlude others).
    min_area: int = field(default=16, metadata={"min": 1})
    #: Persons without any labeled joint are annotated only from this visible area on.
    min_area_unlabeled: int = field(default=300, metadata={"min": 1})

    def __post_init__(self) -> None:
        if self.persons_min > self.persons_max:
            raise ConfigError(f"persons_min ({self.persons_min}) must be <= persons_max "
                              f"({self.persons_max})")
        if self.person_height_min > self.person_height_max:
            raise ConfigError(f"person_height_min ({self.person_height_min}) must be <= "
                              f"person_height_max ({self.person_height_max})")


# --------------------------------------------------------------------------- skeleton sampler


@dataclass
class _Part:
    """One drawing primitive: a line, convex polygon, ellipse or circle over the figure's
    points ``idx`` (rows of ``Figure.points``), with sizes in pixels."""

    kind: str
    pid: int
    idx: tuple[int, ...]
    size: tuple[float, ...] = ()  # line: (thickness,); ellipse: (a, b, angle); circle: (r,)
    depth: float = 0.0  # drawing order key (> 0: nearer the camera)
    tone: float = 1.0  # details only: brightness relative to the skin colour


@dataclass
class Figure:
    """A sampled person, in pixels relative to its pelvis, ready to be placed and drawn."""

    facing: str
    height: float
    points: np.ndarray  # (47, 2): the 17 joints, then the points parts are drawn from
    labeled: np.ndarray  # (17,) bool: labeled unless turned away (visibility comes later)
    parts: list[_Part]  # sorted far to near
    details: list[_Part]  # colour-only marks (face, hair, neckline), pid = part they sit on
    palette: np.ndarray  # (NUM_PARTS, 3) float32 BGR per part id, shading included
    cloth: np.ndarray  # (NUM_PARTS,) bool: parts that carry the clothing texture
    texture: tuple[int, float, float, float]  # kind, amplitude, period (px), angle (rad)
    light: tuple[float, float]  # gradient strength, angle (rad)
    extent: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1

    def __post_init__(self) -> None:
        r = 1.0 + max(max(p.size[:2]) / (2 if p.kind == "line" else 1)
                      for p in self.parts if p.size)
        lo, hi = self.points.min(0) - r, self.points.max(0) + r
        self.extent = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    @property
    def joints(self) -> np.ndarray:
        """(17, 2) COCO joints in pixels relative to the pelvis."""
        return self.points[:17]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.sqrt(v @ v)), 1e-9)


def _perp(v: np.ndarray, u: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Unit component of ``v`` orthogonal to unit ``u`` (``fallback`` when v is parallel)."""
    w = v - (v @ u) * u
    if w @ w < 1e-6:
        w = fallback - (fallback @ u) * u
    return _unit(w)


_L = np.array([1.0, 0.0, 0.0])  # body frame: the person's left,
_Y = np.array([0.0, 1.0, 0.0])  # down (image y),
_F = np.array([0.0, 0.0, 1.0])  # forward (where the person faces)


def _leg_angles(rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(hip flexion, hip abduction, knee flexion) in degrees for the left and right leg."""
    u = rng.uniform
    mode = rng.random()
    if mode < 0.45:  # standing
        return [(u(-8, 15), u(-3, 12), u(0, 15)) for _ in range(2)]
    if mode < 0.8:  # walking: one leg forward, one back
        fwd = (u(10, 40), u(-2, 8), u(0, 30))
        back = (u(-30, -5), u(-2, 8), u(10, 60))
        return [fwd, back] if rng.random() < 0.5 else [back, fwd]
    if mode < 0.9:  # crouching / sitting
        return [(u(50, 100), u(5, 30), u(60, 130)) for _ in range(2)]
    lift = (u(30, 95), u(0, 25), u(20, 120))  # one leg raised (kick, step, climb)
    stand = (u(-8, 10), u(-3, 10), u(0, 15))
    return [lift, stand] if rng.random() < 0.5 else [stand, lift]


def _arm(rng: np.random.Generator, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions of the upper arm and forearm (body frame) for one side (+1 = left)."""
    u = rng.uniform
    if rng.random() < 0.6:  # relaxed or swinging
        elev, azim = math.radians(u(5, 40)), math.radians(u(-80, 90))
    else:  # raised, reaching, waving
        elev, azim = math.radians(u(30, 165)), math.radians(u(-30, 120))
    upper = np.array([side * math.sin(elev) * math.cos(azim), math.cos(elev),
                      math.sin(elev) * math.sin(azim)])
    bend = math.radians(u(0, 50) if rng.random() < 0.55 else u(50, 145))
    tau = math.radians(u(0, 90))  # humeral rotation: elbow bends forward ... upward
    towards = _F * math.cos(tau) - _Y * math.sin(tau) - side * _L * u(0, 0.6)
    b = _perp(towards, upper, -_Y)
    return upper, math.cos(bend) * upper + math.sin(bend) * b


def _look(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colours per part id (skin, hair, shirt, trousers, shoes), clothed parts, skin tone."""
    u = rng.uniform
    skin = _SKIN[rng.integers(len(_SKIN))] * np.float32(u(0.9, 1.1))
    hair = _HAIR[rng.integers(len(_HAIR))] * np.float32(u(0.8, 1.2))
    shirt = rng.uniform(20, 240, 3).astype(np.float32)
    pants = rng.uniform(15, 200, 3).astype(np.float32)
    shoes = rng.uniform(10, 90, 3).astype(np.float32)
    long_sleeves, shorts = rng.random() < 0.5, rng.random() < 0.25
    pal = np.zeros((NUM_PARTS, 3), np.float32)
    cloth = np.zeros(NUM_PARTS, bool)
    pal[[TORSO_UP, *UPPER_ARM]] = shirt
    pal[[NECK, *HAND]] = skin
    pal[HEAD] = hair
    pal[[TORSO_LOW, *THIGH]] = pants
    pal[list(FOREARM)] = shirt if long_sleeves else skin
    pal[list(SHIN)] = skin if shorts else pants
    pal[list(FOOT)] = shoes
    cloth[[TORSO_UP, TORSO_LOW, *UPPER_ARM, *THIGH]] = True
    cloth[list(FOREARM)] = long_sleeves
    cloth[list(SHIN)] = not shorts
    return pal, cloth, skin


def sample_figure(rng: np.random.Generator, height: float, facing: str | None = None) -> Figure:
    """Sample one person of standing ``height`` pixels: proportions, pose, facing, lean, look."""
    u = rng.uniform
    if facing is None:
        facing = FACINGS[int(rng.choice(4, p=_FACING_PROB))]
    build = u(0.85, 1.2)
    spine, neck = 0.29 * u(0.94, 1.06), 0.04 * u(0.8, 1.2)
    sw = 0.1 * u(0.9, 1.1) * (0.7 + 0.3 * build)
    hw = 0.058 * u(0.9, 1.15) * (0.8 + 0.2 * build)
    td = 0.045 * build
    ha, hb = 0.05 * u(0.92, 1.08), 0.064 * u(0.94, 1.06)
    ua, fa = 0.165 * u(0.94, 1.06), 0.145 * u(0.94, 1.06)
    th, sh = 0.245 * u(0.95, 1.05), 0.235 * u(0.95, 1.05)

    r = rng.random()
    beta = math.radians(u(-5, 12) if r < 0.8 else u(12, 35) if r < 0.95 else u(35, 60))
    up = np.array([0.0, -math.cos(beta), math.sin(beta)])  # spine, pelvis -> neck
    front = np.array([0.0, math.sin(beta), math.cos(beta)])  # chest normal
    sho_c = spine * up
    head_up = _unit(up + _F * rng.normal(0.0, 0.15) + _L * rng.normal(0.0, 0.08))
    neck_top = sho_c + neck * head_up
    head_c = neck_top + 0.85 * hb * head_up
    psi = math.radians(u(-20, 20))  # head turned relative to the body
    fh = np.array([math.sin(psi), 0.0, math.cos(psi)])
    lh = np.array([math.cos(psi), 0.0, -math.sin(psi)])

    # Rows of pts: 0-16 COCO joints, 17 shoulder centre, 18 neck top, 19 head centre,
    # 20-21 hands, 22-25 heel/toe (left, right), 26 face centre, 27 mouth,
    # 28-35 / 36-43 corners of the upper / lower torso slab, 44-46 neckline.
    pts = np.zeros((47, 3))
    pts[NOSE] = head_c + 0.2 * hb * _Y + 1.0 * ha * fh
    for s, eye, ear in ((1.0, L_EYE, L_EAR), (-1.0, R_EYE, R_EAR)):
        pts[eye] = head_c - 0.12 * hb * _Y + s * 0.42 * ha * lh + 0.8 * ha * fh
        pts[ear] = head_c + 0.05 * hb * _Y + s * 0.98 * ha * lh - 0.1 * ha * fh
    for i, s in enumerate((1.0, -1.0)):
        sho = sho_c + s * sw * _L
        upper, lower = _arm(rng, s)
        pts[L_SHO + i] = sho
        pts[L_ELB + i] = sho + ua * upper
        pts[L_WRI + i] = pts[L_ELB + i] + fa * lower
        pts[20 + i] = pts[L_WRI + i] + 0.022 * lower  # hand centre
    for i, (flex, abd, knee) in enumerate(_leg_angles(rng)):
        s = 1.0 - 2.0 * i
        f, a, k = math.radians(flex), math.radians(abd), math.radians(knee)
        thigh = np.array([s * math.sin(a), math.cos(a) * math.cos(f), math.cos(a) * math.sin(f)])
        shin = math.cos(k) * thigh + math.sin(k) * _perp(-_F, thigh, _Y)
        pts[L_HIP + i] = s * hw * _L
        pts[L_KNE + i] = pts[L_HIP + i] + th * thigh
        pts[L_ANK + i] = pts[L_KNE + i] + sh * shin
        foot = _unit(_F * 0.95 + s * _L * u(0.1, 0.45) + _Y * 0.2)
        pts[22 + 2 * i] = pts[L_ANK + i] - 0.012 * foot + 0.012 * _Y  # heel
        pts[23 + 2 * i] = pts[L_ANK + i] + 0.07 * foot  # toe
    pts[17], pts[18], pts[19] = sho_c, neck_top, head_c
    pts[26] = head_c + 0.3 * ha * fh + 0.15 * hb * _Y  # face centre
    pts[27] = head_c + 0.55 * hb * _Y + 0.95 * ha * fh  # mouth
    waist_c, waist_w = 0.42 * spine * up, max(0.82 * sw, hw + 0.035)
    corners = [(sho_c + 0.02 * up, sw + 0.02), (waist_c, waist_w),
               (waist_c, waist_w), (-0.035 * up, hw + 0.04)]
    n = 28
    for c, w in corners:  # torso slabs: upper (rows 28-35), lower (36-43)
        for sl in (1.0, -1.0):
            for sf in (1.0, -1.0):
                pts[n] = c + sl * w * _L + sf * td * front
                n += 1
    pts[44] = sho_c + 0.3 * sw * _L + 0.01 * up + td * front  # neckline (front only)
    pts[45] = sho_c - 0.3 * sw * _L + 0.01 * up + td * front
    pts[46] = sho_c - 0.06 * up + td * front

    # Orthographic projection after yaw (facing) and in-plane lean, then to pixels.
    theta = math.radians(_FACING_YAW[facing] + u(-1, 1) * _YAW_JITTER[facing])
    lean = math.radians(float(np.clip(rng.normal(0.0, 8.0), -25, 25)))
    ct, st, cl, sl_ = math.cos(theta), math.sin(theta), math.cos(lean), math.sin(lean)
    x = pts[:, 0] * ct - pts[:, 2] * st
    depth = pts[:, 0] * st + pts[:, 2] * ct  # > 0: nearer the camera than the pelvis
    p = np.stack([x * cl - pts[:, 1] * sl_, x * sl_ + pts[:, 1] * cl], 1) * height

    labeled = np.ones(17, bool)
    labeled[list(UNLABELED_BY_FACING[facing])] = False
    hp = height * build
    parts: list[_Part] = [
        _Part("line", NECK, (17, 18), (max(2.0, 0.05 * hp),), -1e-3),
        _Part("poly", TORSO_LOW, tuple(range(36, 44)), (), 0.0),
        _Part("poly", TORSO_UP, tuple(range(28, 36)), (), 0.0),
        _Part("ellipse", HEAD, (19,), (ha * height, hb * height, math.degrees(lean)), 2e-3),
    ]
    for ear in (L_EAR, R_EAR):
        if labeled[ear]:
            parts.append(_Part("ellipse", HEAD, (ear,),
                               (0.22 * ha * height, 0.3 * hb * height, math.degrees(lean)), 2e-3))
    if facing in ("left", "right"):
        parts.append(_Part("circle", HEAD, (NOSE,), (0.22 * ha * height,), 2e-3))
    limbs = ((UPPER_ARM, L_SHO, L_ELB, 0.055), (FOREARM, L_ELB, L_WRI, 0.045),
             (THIGH, L_HIP, L_KNE, 0.085), (SHIN, L_KNE, L_ANK, 0.065), (FOOT, 22, 23, 0.04))
    for pids, a, b, thick in limbs:
        for i in range(2):
            ia, ib = (a + 2 * i, b + 2 * i) if pids is FOOT else (a + i, b + i)
            parts.append(_Part("line", pids[i], (ia, ib), (max(2.0, thick * hp),),
                               float(depth[ia] + depth[ib]) / 2))
    for i in range(2):
        parts.append(_Part("circle", HAND[i], (20 + i,), (max(1.5, 0.028 * hp),),
                           float(depth[L_WRI + i]) + 1e-4))
    order = sorted(range(len(parts)), key=lambda j: (parts[j].depth, j))
    parts = [parts[j] for j in order]

    pal, cloth, skin = _look(rng)
    for part in parts:  # far-side limbs darker, near-side ones a little brighter
        if part.pid >= UPPER_ARM[0]:
            pal[part.pid] *= np.float32(np.clip(1.0 + 2.5 * part.depth, 0.62, 1.12))
    details: list[_Part] = []
    dot = max(0.8, 0.13 * ha * height)
    if facing != "back":
        details.append(_Part("ellipse", HEAD, (26,),
                             (0.8 * ha * height, 0.8 * hb * height, math.degrees(lean))))
        details += [_Part("circle", HEAD, (e,), (dot,), tone=0.25)
                    for e in (L_EYE, R_EYE) if labeled[e]]
        if facing == "front":
            details.append(_Part("circle", HEAD, (NOSE,), (0.9 * dot,), tone=0.75))
            mouth = (1.6 * dot, 0.6 * dot, math.degrees(lean))
            details.append(_Part("ellipse", HEAD, (27,), mouth, tone=0.4))
            details.append(_Part("poly", TORSO_UP, (44, 45, 46)))
    details += [_Part("circle", HEAD, (e,), (0.22 * ha * height,))
                for e in (L_EAR, R_EAR) if labeled[e]]
    if facing in ("left", "right"):
        details.append(_Part("circle", HEAD, (NOSE,), (0.22 * ha * height,)))
    texture = (int(rng.integers(4)), u(0.08, 0.3), max(3.0, u(0.03, 0.08) * height),
               lean + (0.0 if rng.random() < 0.7 else math.pi / 2) + u(-0.2, 0.2))
    pal[0] = skin  # palette row 0 is unused by the label map: keep the skin tone there
    return Figure(facing, float(height), p, labeled, parts, details, pal, cloth,
                  texture, (u(-0.25, 0.25), u(0, 2 * math.pi)))


# --------------------------------------------------------------------------- renderer


def _draw(img: np.ndarray, part: _Part, color: float | tuple, q: np.ndarray) -> None:
    """Draw one primitive; ``q`` holds the figure's points in crop pixels, fixed point."""
    i = part.idx
    if part.kind == "line":
        cv2.line(img, (int(q[i[0], 0]), int(q[i[0], 1])), (int(q[i[1], 0]), int(q[i[1], 1])),
                 color, max(1, round(part.size[0])), cv2.LINE_8, _SHIFT)
    elif part.kind == "poly":
        cv2.fillConvexPoly(img, cv2.convexHull(q[list(i)]), color, cv2.LINE_8, _SHIFT)
    elif part.kind == "ellipse":
        axes = (max(1, round(part.size[0] * _ONE)), max(1, round(part.size[1] * _ONE)))
        cv2.ellipse(img, (int(q[i[0], 0]), int(q[i[0], 1])), axes, part.size[2], 0, 360, color,
                    -1, cv2.LINE_8, _SHIFT)
    else:
        cv2.circle(img, (int(q[i[0], 0]), int(q[i[0], 1])), max(1, round(part.size[0] * _ONE)),
                   color, -1, cv2.LINE_8, _SHIFT)


def _texture(fig: Figure, h: int, w: int, x0: float, y0: float,
             rng: np.random.Generator) -> np.ndarray | None:
    """Multiplicative clothing texture (h, w) around 0: stripes, blotches, checks or None."""
    kind, amp, period, ang = fig.texture
    if kind == 0:
        return None
    if kind == 2:
        small = rng.uniform(-amp, amp, (h // 6 + 2, w // 6 + 2)).astype(np.float32)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    xs = np.arange(w, dtype=np.float32)[None, :] + np.float32(x0)
    ys = np.arange(h, dtype=np.float32)[:, None] + np.float32(y0)
    f = np.float32(2 * math.pi / period)
    a = np.sin((xs * np.float32(math.sin(ang)) + ys * np.float32(math.cos(ang))) * f)
    if kind == 3:
        a = a * np.sin((xs * np.float32(math.cos(ang)) - ys * np.float32(math.sin(ang))) * f)
    return np.where(a > 0, np.float32(amp), np.float32(-amp))


@dataclass
class _Drawn:
    """Where a person landed: crop origin and its own label map (for joint visibility)."""

    x0: int
    y0: int
    label: np.ndarray


def _render(canvas: np.ndarray, owner: np.ndarray, fig: Figure, px: float, py: float, k: int,
            rng: np.random.Generator) -> _Drawn | None:
    """Draw ``fig`` with its pelvis at (px, py) over ``canvas``; mark its pixels ``k`` in
    ``owner``. Returns None when nothing of it lands inside the image."""
    hh, ww = owner.shape
    ex0, ey0, ex1, ey1 = fig.extent
    x0, y0 = max(0, math.floor(px + ex0)), max(0, math.floor(py + ey0))
    x1, y1 = min(ww, math.ceil(px + ex1) + 1), min(hh, math.ceil(py + ey1) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    ox, oy = x0 - px, y0 - py  # crop origin in figure coordinates
    label = np.zeros((y1 - y0, x1 - x0), np.uint8)
    q = np.round((fig.points - (ox, oy)) * _ONE).astype(np.int32)
    for part in fig.parts:
        _draw(label, part, part.pid, q)
    mask = label > 0
    if not mask.any():
        return None
    h, w = label.shape
    strength, ang = fig.light
    xs = np.arange(w, dtype=np.float32)[None, :] + np.float32(ox)
    ys = np.arange(h, dtype=np.float32)[:, None] + np.float32(oy)
    ramp = 1.0 + (xs * np.float32(math.cos(ang)) + ys * np.float32(math.sin(ang))) * np.float32(
        strength / fig.height)
    tex = _texture(fig, h, w, ox, oy, rng)
    mult = ramp if tex is None else ramp * (1.0 + tex * fig.cloth[label])
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[:NUM_PARTS, 0] = np.clip(fig.palette, 0, 255)
    col = cv2.multiply(cv2.LUT(cv2.merge([label, label, label]), lut), cv2.merge([mult] * 3),
                       dtype=cv2.CV_8U)
    shade = float(ramp.mean())
    for pid in (HEAD, TORSO_UP):  # face, ears, neckline: only where that part shows
        marks = [d for d in fig.details if d.pid == pid]
        if not marks:
            continue
        near = fig.points[[j for d in marks for j in d.idx]] - (ox, oy)
        r = 2.0 + max(max(d.size[:2]) if d.size else 0.0 for d in marks)
        lo, hi = np.floor(near.min(0) - r).astype(int), np.ceil(near.max(0) + r).astype(int)
        wx0, wy0, wx1, wy1 = max(0, lo[0]), max(0, lo[1]), min(w, hi[0]), min(h, hi[1])
        if wx1 <= wx0 or wy1 <= wy0:
            continue
        sel = label[wy0:wy1, wx0:wx1] == pid
        win = col[wy0:wy1, wx0:wx1]
        det = win.copy()
        for d in marks:
            tone = tuple(float(c) for c in np.clip(fig.palette[0] * d.tone * shade, 0, 255))
            _draw(det, d, tone, q - (wx0 * _ONE, wy0 * _ONE))
        win[sel] = det[sel]
    np.copyto(canvas[y0:y1, x0:x1], col, where=mask[..., None])
    owner[y0:y1, x0:x1][mask] = k
    return _Drawn(x0, y0, label)


def _background(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Gradient + blotchy texture + distractor shapes (some limb-like bars and blobs)."""
    w, h = cfg.image_width, cfg.image_height
    u = rng.uniform
    cell = int(rng.choice([8, 16, 32]))  # texture grain; built small, then upsampled

    def layer(rows: int) -> np.ndarray:
        """A linear colour gradient plus blotches over ``rows`` image rows."""
        gh, gw = max(2, rows // cell + 2), w // cell + 2
        c0, c1 = rng.uniform(30, 225, (2, 3))
        ang = u(0, 2 * math.pi)
        t = np.add.outer(np.linspace(0, math.sin(ang), gh), np.linspace(0, math.cos(ang), gw))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        small = c0 + (c1 - c0) * t[..., None] + rng.uniform(-1, 1, (gh, gw, 3)) * u(8, 35)
        small = np.clip(small, 0, 255).astype(np.uint8)
        return cv2.resize(small, (w, rows), interpolation=cv2.INTER_CUBIC)

    img = layer(h)
    if rng.random() < 0.6:  # a floor below a horizon
        horizon = int(u(0.3, 0.75) * h)
        img[horizon:] = layer(h - horizon)
    n = int(rng.poisson(cfg.distractors)) if cfg.distractors else 0
    for _ in range(n):
        kind = int(rng.integers(7))
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cx, cy = u(-0.1, 1.1) * w, u(-0.1, 1.1) * h
        size = u(0.03, 0.25) * h
        if kind == 0:  # rectangle
            p0 = (int(cx), int(cy))
            p1 = (int(cx + u(-1, 1) * size * 2), int(cy + u(-1, 1) * size * 2))
            cv2.rectangle(img, p0, p1, color, -1)
        elif kind == 1:  # disc or ring
            cv2.circle(img, (int(cx), int(cy)), int(size / 2) + 1, color,
                       -1 if rng.random() < 0.6 else int(u(1, 5)), cv2.LINE_AA)
        elif kind == 2:  # random polygon
            poly = np.stack([cx + u(-1, 1, 5) * size, cy + u(-1, 1, 5) * size], 1)
            cv2.fillPoly(img, [poly.astype(np.int32)], color, cv2.LINE_AA)
        elif kind == 3:  # thin line
            cv2.line(img, (int(cx), int(cy)), (int(u(0, w)), int(u(0, h))), color,
                     int(u(1, 4)), cv2.LINE_AA)
        elif kind in (4, 5):  # limb-like bar (sometimes bent), skin or cloth coloured
            if rng.random() < 0.5:
                color = tuple(float(c) for c in _SKIN[rng.integers(len(_SKIN))])
            thick = max(2, int(u(0.02, 0.07) * h))
            a = u(0, 2 * math.pi)
            p0 = np.array([cx, cy])
            for _seg in range(1 + int(rng.random() < 0.4)):
                p1 = p0 + size * np.array([math.cos(a), math.sin(a)])
                cv2.line(img, tuple(map(int, p0)), tuple(map(int, p1)), color, thick,
                         cv2.LINE_AA)
                p0, a = p1, a + u(-2, 2)
        else:  # head-like blob
            axes = (int(size / 3) + 1, int(size / 2.5) + 1)
            cv2.ellipse(img, (int(cx), int(cy)), axes, u(0, 180), 0, 360, color, -1,
                        cv2.LINE_AA)
    return img


# --------------------------------------------------------------------------- layout


def _height(rng: np.random.Generator, cfg: SyntheticConfig) -> float:
    lo, hi = math.log(cfg.person_height_min), math.log(cfg.person_height_max)
    return cfg.image_height * math.exp(rng.uniform(lo, hi))


def _centre_range(lo_ext: float, hi_ext: float, size: int) -> tuple[float, float]:
    """Range of a root coordinate keeping [root + lo_ext, root + hi_ext] inside [0, size]."""
    a, b = -lo_ext, size - hi_ext
    return (a, b) if a <= b else (b, a)


def _off_frame(rng: np.random.Generator, ext: tuple[float, float, float, float],
               w: int, h: int, most: float = 0.6) -> tuple[str, float]:
    """Pick an image side and the root coordinate that puts 20% to ``most`` of ``ext`` past it."""
    x0, y0, x1, y1 = ext
    side = ("left", "right", "bottom", "top")[int(rng.choice(4, p=(0.35, 0.35, 0.25, 0.05)))]
    f = rng.uniform(0.2, most)
    if side == "left":
        return side, -f * (x1 - x0) - x0
    if side == "right":
        return side, w + f * (x1 - x0) - x1
    if side == "bottom":
        return side, h + f * (y1 - y0) - y1
    return side, -f * (y1 - y0) - y0


def _overlap(box: tuple[float, ...], others: list[tuple[float, ...]]) -> float:
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    best = 0.0
    for o in others:
        iw = min(box[2], o[2]) - max(box[0], o[0])
        ih = min(box[3], o[3]) - max(box[1], o[1])
        if iw > 0 and ih > 0:
            best = max(best, iw * ih / area)
    return best


def _layout(rng: np.random.Generator, cfg: SyntheticConfig) -> list[tuple[Figure, float, float]]:
    """Sample persons and place them: overlapping groups plus isolated persons, in painter's
    order (farther = feet higher in the image = drawn first)."""
    w, h = cfg.image_width, cfg.image_height
    n = int(rng.integers(cfg.persons_min, cfg.persons_max + 1))
    groups: list[int] = []
    if n >= 2 and rng.random() < cfg.crowding:
        alone = rng.random(n) < _ALONE * (1.0 - cfg.crowding)
        alone[:2] = False
        left = int((~alone).sum())
        while left >= 2:
            size = min(left, int(rng.integers(2, cfg.group_size_max + 1)))
            if left - size == 1 and size < cfg.group_size_max:
                size += 1  # no one left over on their own
            groups.append(size)
            left -= size
        n_alone = int(alone.sum()) + left
    else:
        n_alone = n
    placed: list[tuple[Figure, float, float]] = []
    boxes: list[tuple[float, ...]] = []
    for size in groups:
        hg = _height(rng, cfg)
        near = rng.uniform(-1, 1, size)  # > 0: nearer the camera, larger and lower
        figs = [sample_figure(rng, hg * (1 + 0.12 * d)) for d in near]
        spread = _SPREAD0 + _SPREAD1 * (1.0 - cfg.crowding) * rng.random()
        gaps = rng.uniform(0.03, 0.03 + spread, size - 1) * hg
        xs = np.concatenate([[0.0], np.cumsum(gaps)])
        xs -= xs.mean()
        ext = (float(xs.min()) + min(f.extent[0] for f in figs),
               min(f.extent[1] for f in figs),
               float(xs.max()) + max(f.extent[2] for f in figs),
               max(f.extent[3] for f in figs))
        gx = rng.uniform(*_centre_range(ext[0], ext[2], w))
        gy = rng.uniform(*_centre_range(ext[1], ext[3], h))
        if rng.random() < cfg.out_of_frame:
            side, v = _off_frame(rng, ext, w, h, most=0.4)
            gx, gy = (v, gy) if side in ("left", "right") else (gx, v)
        for f, x, d in zip(figs, xs, near, strict=True):
            px, py = gx + x + rng.normal(0, 0.02) * hg, gy + d * 0.06 * hg
            placed.append((f, px, py))
            boxes.append((px + f.extent[0], py + f.extent[1], px + f.extent[2], py + f.extent[3]))
    for _ in range(n_alone):
        f = sample_figure(rng, _height(rng, cfg))
        best: tuple[float, float, float] | None = None
        for _try in range(8):
            px = rng.uniform(*_centre_range(f.extent[0], f.extent[2], w))
            py = rng.uniform(*_centre_range(f.extent[1], f.extent[3], h))
            if rng.random() < cfg.out_of_frame:
                side, v = _off_frame(rng, f.extent, w, h)
                px, py = (v, py) if side in ("left", "right") else (px, v)
            ov = _overlap((px + f.extent[0], py + f.extent[1], px + f.extent[2],
                           py + f.extent[3]), boxes)
            if best is None or ov < best[0]:
                best = (ov, px, py)
            if ov < 0.05:
                break
        assert best is not None
        placed.append((f, best[1], best[2]))
        boxes.append((best[1] + f.extent[0], best[2] + f.extent[1], best[1] + f.extent[2],
                      best[2] + f.extent[3]))
    order = sorted(range(len(placed)), key=lambda i: (placed[i][2] + placed[i][0].extent[3], i))
    return [placed[i] for i in order]


# --------------------------------------------------------------------------- annotations


def _annotation(fig: Figure, px: float, py: float, drawn: _Drawn, owner: np.ndarray,
                k: int, cfg: SyntheticConfig) -> dict | None:
    """COCO annotation of person ``k`` (visible mask from the owner map) or None if too small."""
    vis = owner == k
    area = int(vis.sum())
    if area < cfg.min_area:
        return None
    hh, ww = owner.shape
    kpts: list[float] = []
    for j in range(17):
        x, y = round(float(fig.joints[j, 0] + px), 2), round(float(fig.joints[j, 1] + py), 2)
        if not fig.labeled[j] or not (0 <= x <= ww - 1 and 0 <= y <= hh - 1):
            kpts += [0, 0, 0]
            continue
        cx, cy = math.floor(x + 0.5), math.floor(y + 0.5)
        lx, ly = cx - drawn.x0, cy - drawn.y0
        own = 0
        if 0 <= ly < drawn.label.shape[0] and 0 <= lx < drawn.label.shape[1]:
            own = int(drawn.label[ly, lx])
        visible = owner[cy, cx] == k and _OWNS[j, own]
        kpts += [x, y, 2 if visible else 1]
    num = sum(1 for v in kpts[2::3] if v > 0)
    if num == 0 and area < cfg.min_area_unlabeled:
        return None
    rle = mask_utils.encode(np.asfortranarray(vis.astype(np.uint8)))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    return {
        "category_id": 1,
        "bbox": bbox,
        "area": float(area),
        "segmentation": {"size": [hh, ww], "counts": rle["counts"].decode("utf-8")},
        "keypoints": kpts,
        "num_keypoints": num,
        "iscrowd": 0,
    }


def generate_image(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[np.ndarray, list[dict]]:
    """BGR uint8 image (H, W, 3) and its person annotations (without id / image_id)."""
    canvas = _background(rng, cfg)
    owner = np.full((cfg.image_height, cfg.image_width), -1, np.int16)
    layout = _layout(rng, cfg)
    drawn = [_render(canvas, owner, f, px, py, k, rng) for k, (f, px, py) in enumerate(layout)]
    anns = []
    for k, ((f, px, py), d) in enumerate(zip(layout, drawn, strict=True)):
        if d is not None:
            ann = _annotation(f, px, py, d, owner, k, cfg)
            if ann is not None:
                anns.append(ann)
    if cfg.blur_sigma > 0:
        canvas = cv2.GaussianBlur(canvas, (0, 0), cfg.blur_sigma * rng.uniform(0.6, 1.4))
    if cfg.noise_std > 0:  # zero-mean noise: sum of two uniform bytes (cheap, near Gaussian)
        pair = np.frombuffer(rng.bytes(2 * canvas.size), np.uint8).reshape(2, *canvas.shape)
        noise = cv2.add(pair[0], pair[1], dtype=cv2.CV_16S)
        gain = cfg.noise_std * rng.uniform(0.5, 1.5) / _PAIR_STD
        canvas = cv2.addWeighted(canvas, 1.0, noise, gain, -255.0 * gain, dtype=cv2.CV_8U)
    return canvas, anns


def generate_split(root: Path, split: str, num_images: int, seed: int, cfg: SyntheticConfig,
                   progress: bool = True) -> dict:
    """Write images under root/images/<split>/ and return the COCO dict (caller writes the JSON).

    Image ``i`` (id ``i + 1``) depends only on (seed, split, i), so any image can be rebuilt
    alone and the same arguments give byte-identical files."""
    root = Path(root)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    code = zlib.crc32(split.encode("utf-8"))
    images: list[dict] = []
    annotations: list[dict] = []
    for i in tqdm(range(num_images), desc=f"synthetic {split}", unit="img", disable=not progress):
        image, persons = generate_image(np.random.default_rng([seed, code, i]), cfg)
        image_id = i + 1
        name = f"{split}/{image_id:06d}.jpg"
        path = root / "images" / name
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]):
            raise DataError(f"{path}: could not write the image")
        images.append({"id": image_id, "file_name": name, "width": cfg.image_width,
                       "height": cfg.image_height, "crowdIndex": round(crowd_index(persons), 6)})
        for ann in persons:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    return {
        "info": {"description": "hintpose synthetic crowded people", "split": split,
                 "seed": seed, "config": asdict(cfg)},
        "images": images,
        "annotations": annotations,
        "categories": [person_category()],
    }
