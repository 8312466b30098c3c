"""The synthetic people's bodies: a simple 3D skeleton with sampled bone lengths and joint
angles in human ranges, its facing and lean, projected orthographically, and its body parts
for drawing (see hintpose.data.synthetic, which renders and annotates them).

The geometry gives the same bits on every x86-64 CPU: Python floats and elementwise numpy
arithmetic only, with sine, cosine, dot products and normal draws from hintpose.data.portable
(not numpy's BLAS-backed ``@`` or libm's CPU-specific variants)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hintpose.data.portable import cos, normal, sin
from hintpose.data.portable import dot as dot3

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
OWNS = np.zeros((17, NUM_PARTS), dtype=bool)
for _j, _parts in _JOINT_PARTS.items():
    OWNS[_j, list(_parts)] = True

FACINGS = ("front", "back", "left", "right")
_FACING_PROB = (0.4, 0.24, 0.18, 0.18)
_FACING_YAW = {"front": 0.0, "left": 90.0, "back": 180.0, "right": 270.0}
_YAW_JITTER = {"front": 30.0, "back": 30.0, "left": 20.0, "right": 20.0}
#: Face points an annotator cannot see for each facing (COCO leaves them unlabeled).
UNLABELED_BY_FACING: dict[str, tuple[int, ...]] = {
    "front": (), "back": (NOSE, L_EYE, R_EYE), "left": (R_EYE, R_EAR), "right": (L_EYE, L_EAR),
}

SKIN = np.array([[200, 215, 245], [160, 190, 230], [120, 160, 215], [90, 125, 180],
                  [60, 90, 140], [45, 65, 100]], dtype=np.float32)  # BGR
_HAIR = np.array([[20, 20, 25], [30, 45, 70], [40, 70, 110], [40, 150, 205], [150, 150, 150],
                  [25, 35, 120]], dtype=np.float32)  # black, browns, blond, grey, red


# --------------------------------------------------------------------------- skeleton sampler


@dataclass
class Part:
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
    parts: list[Part]  # sorted far to near
    details: list[Part]  # colour-only marks (face, hair, neckline), pid = part they sit on
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
    return v / max(math.sqrt(dot3(v, v)), 1e-9)


def _perp(v: np.ndarray, u: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Unit component of ``v`` orthogonal to unit ``u`` (``fallback`` when v is parallel)."""
    w = v - dot3(v, u) * u
    if dot3(w, w) < 1e-6:
        w = fallback - dot3(fallback, u) * u
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
    upper = np.array([side * sin(elev) * cos(azim), cos(elev),
                      sin(elev) * sin(azim)])
    bend = math.radians(u(0, 50) if rng.random() < 0.55 else u(50, 145))
    tau = math.radians(u(0, 90))  # humeral rotation: elbow bends forward ... upward
    towards = _F * cos(tau) - _Y * sin(tau) - side * _L * u(0, 0.6)
    b = _perp(towards, upper, -_Y)
    return upper, cos(bend) * upper + sin(bend) * b


def _look(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colours per part id (skin, hair, shirt, trousers, shoes), clothed parts, skin tone."""
    u = rng.uniform
    skin = SKIN[rng.integers(len(SKIN))] * np.float32(u(0.9, 1.1))
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
    up = np.array([0.0, -cos(beta), sin(beta)])  # spine, pelvis -> neck
    front = np.array([0.0, sin(beta), cos(beta)])  # chest normal
    sho_c = spine * up
    head_up = _unit(up + _F * normal(rng, 0.0, 0.15) + _L * normal(rng, 0.0, 0.08))
    neck_top = sho_c + neck * head_up
    head_c = neck_top + 0.85 * hb * head_up
    psi = math.radians(u(-20, 20))  # head turned relative to the body
    fh = np.array([sin(psi), 0.0, cos(psi)])
    lh = np.array([cos(psi), 0.0, -sin(psi)])

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
        thigh = np.array([s * sin(a), cos(a) * cos(f), cos(a) * sin(f)])
        shin = cos(k) * thigh + sin(k) * _perp(-_F, thigh, _Y)
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
    lean = math.radians(float(np.clip(normal(rng, 0.0, 8.0), -25, 25)))
    ct, st, cl, sl_ = cos(theta), sin(theta), cos(lean), sin(lean)
    x = pts[:, 0] * ct - pts[:, 2] * st
    depth = pts[:, 0] * st + pts[:, 2] * ct  # > 0: nearer the camera than the pelvis
    p = np.stack([x * cl - pts[:, 1] * sl_, x * sl_ + pts[:, 1] * cl], 1) * height

    labeled = np.ones(17, bool)
    labeled[list(UNLABELED_BY_FACING[facing])] = False
    hp = height * build
    parts: list[Part] = [
        Part("line", NECK, (17, 18), (max(2.0, 0.05 * hp),), -1e-3),
        Part("poly", TORSO_LOW, tuple(range(36, 44)), (), 0.0),
        Part("poly", TORSO_UP, tuple(range(28, 36)), (), 0.0),
        Part("ellipse", HEAD, (19,), (ha * height, hb * height, math.degrees(lean)), 2e-3),
    ]
    for ear in (L_EAR, R_EAR):
        if labeled[ear]:
            parts.append(Part("ellipse", HEAD, (ear,),
                               (0.22 * ha * height, 0.3 * hb * height, math.degrees(lean)), 2e-3))
    if facing in ("left", "right"):
        parts.append(Part("circle", HEAD, (NOSE,), (0.22 * ha * height,), 2e-3))
    limbs = ((UPPER_ARM, L_SHO, L_ELB, 0.055), (FOREARM, L_ELB, L_WRI, 0.045),
             (THIGH, L_HIP, L_KNE, 0.085), (SHIN, L_KNE, L_ANK, 0.065), (FOOT, 22, 23, 0.04))
    for pids, a, b, thick in limbs:
        for i in range(2):
            ia, ib = (a + 2 * i, b + 2 * i) if pids is FOOT else (a + i, b + i)
            parts.append(Part("line", pids[i], (ia, ib), (max(2.0, thick * hp),),
                               float(depth[ia] + depth[ib]) / 2))
    for i in range(2):
        parts.append(Part("circle", HAND[i], (20 + i,), (max(1.5, 0.028 * hp),),
                           float(depth[L_WRI + i]) + 1e-4))
    order = sorted(range(len(parts)), key=lambda j: (parts[j].depth, j))
    parts = [parts[j] for j in order]

    pal, cloth, skin = _look(rng)
    for part in parts:  # far-side limbs darker, near-side ones a little brighter
        if part.pid >= UPPER_ARM[0]:
            pal[part.pid] *= np.float32(np.clip(1.0 + 2.5 * part.depth, 0.62, 1.12))
    details: list[Part] = []
    dot = max(0.8, 0.13 * ha * height)
    if facing != "back":
        details.append(Part("ellipse", HEAD, (26,),
                             (0.8 * ha * height, 0.8 * hb * height, math.degrees(lean))))
        details += [Part("circle", HEAD, (e,), (dot,), tone=0.25)
                    for e in (L_EYE, R_EYE) if labeled[e]]
        if facing == "front":
            details.append(Part("circle", HEAD, (NOSE,), (0.9 * dot,), tone=0.75))
            mouth = (1.6 * dot, 0.6 * dot, math.degrees(lean))
            details.append(Part("ellipse", HEAD, (27,), mouth, tone=0.4))
            details.append(Part("poly", TORSO_UP, (44, 45, 46)))
    details += [Part("circle", HEAD, (e,), (0.22 * ha * height,))
                for e in (L_EAR, R_EAR) if labeled[e]]
    if facing in ("left", "right"):
        details.append(Part("circle", HEAD, (NOSE,), (0.22 * ha * height,)))
    texture = (int(rng.integers(4)), u(0.08, 0.3), max(3.0, u(0.03, 0.08) * height),
               lean + (0.0 if rng.random() < 0.7 else math.pi / 2) + u(-0.2, 0.2))
    pal[0] = skin  # palette row 0 is unused by the label map: keep the skin tone there
    return Figure(facing, float(height), p, labeled, parts, details, pal, cloth,
                  texture, (u(-0.25, 0.25), u(0, 2 * math.pi)))
