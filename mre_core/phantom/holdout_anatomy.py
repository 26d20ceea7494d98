"""Hold-out phantom anatomy: implicit Fourier-boundary organs in a warped 3-D patient frame.

Written independently of :mod:`mre_core.phantom.anatomy` (never imported, never read) so that the
hold-out style shares no shape model with the training phantom. Each organ is a star-shaped
superellipse whose radius is modulated by a few Fourier harmonics, whose cross-section grows and
shrinks along z like an ellipsoid, and whose implicit value approximates a signed distance in mm.
The liver is a smooth union of right lobe, left lobe and (sometimes) caudate; all coordinates are
warped by a smooth random displacement field before evaluation (elastic deformation).

Frame: x mm towards the patient's LEFT, y mm towards POSTERIOR, z mm towards HEAD; image rows run
anterior→posterior and columns patient right→left (DICOM LPS with orientation ``1\\0\\0\\0\\1\\0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from scipy import ndimage as ndi


class HTissue(IntEnum):
    """Tissue labels of the hold-out phantom (its own numbering)."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    BONE = 3
    VISCERA = 4
    LIVER = 5
    LIVER_VESSEL = 6
    CYST = 7
    GALLBLADDER = 8
    STOMACH = 9
    BOWEL = 10
    GAS = 11
    SPLEEN = 12
    KIDNEY = 13
    AORTA = 14
    IVC = 15
    PORTAL = 16  #: extrahepatic portal vein
    ASCITES = 17
    LUNG = 18


#: tissues without MR signal worth inverting (no shear-wave estimate possible)
NO_SIGNAL = (HTissue.AIR, HTissue.GAS, HTissue.BONE, HTissue.LUNG)
#: fluid: shear waves do not propagate
FLUID = (HTissue.CYST, HTissue.GALLBLADDER, HTissue.ASCITES, HTissue.AORTA, HTissue.IVC, HTissue.PORTAL,
         HTissue.LIVER_VESSEL)

#: relative magnitude (SE-EPI, T2-weighted look) per tissue
_MAG = {HTissue.AIR: 0.0, HTissue.FAT: 0.62, HTissue.MUSCLE: 0.24, HTissue.BONE: 0.05, HTissue.VISCERA: 0.42,
        HTissue.LIVER: 0.34, HTissue.LIVER_VESSEL: 0.12, HTissue.CYST: 0.95, HTissue.GALLBLADDER: 0.9,
        HTissue.STOMACH: 0.55, HTissue.BOWEL: 0.47, HTissue.GAS: 0.02, HTissue.SPLEEN: 0.58, HTissue.KIDNEY: 0.55,
        HTissue.AORTA: 0.07, HTissue.IVC: 0.14, HTissue.PORTAL: 0.12, HTissue.ASCITES: 0.92, HTissue.LUNG: 0.03}


@dataclass(frozen=True)
class Blob:
    """A star-shaped organ section: superellipse × Fourier radius, ellipsoidal extent in z."""

    cx: float
    cy: float
    ax: float
    ay: float
    angle: float = 0.0
    p: float = 2.0
    harm: tuple[tuple[int, float, float], ...] = ()
    zc: float = 0.0
    hz: float = 1e9
    zpow: float = 0.5
    drift: tuple[float, float] = (0.0, 0.0)

    def sdf(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray | None:
        """Approximate signed distance (mm, negative inside) at height ``z``; None where absent."""
        u = (z - self.zc) / self.hz
        if abs(u) >= 1:
            return None
        s = (1 - u * u) ** self.zpow
        if s < 0.12:
            return None
        cx, cy = self.cx + self.drift[0] * (z - self.zc), self.cy + self.drift[1] * (z - self.zc)
        c, sn = np.cos(self.angle), np.sin(self.angle)
        du, dv = x - cx, y - cy
        xr, yr = (c * du + sn * dv) / (self.ax * s), (-sn * du + c * dv) / (self.ay * s)
        rho = (np.abs(xr) ** self.p + np.abs(yr) ** self.p) ** (1 / self.p)
        th = np.arctan2(yr, xr)
        r = np.ones_like(rho)
        for k, amp, ph in self.harm:
            r = r + amp * np.cos(k * th + ph)
        return (rho / np.maximum(r, 0.3) - 1) * min(self.ax, self.ay) * s


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth minimum (log-sum-exp) of two signed distances."""
    m = np.minimum(a, b)
    return m - k * np.log(np.exp(-(a - m) / k) + np.exp(-(b - m) / k))


@dataclass(frozen=True)
class Anatomy:
    """One patient's anatomy and tissue properties (pure data; rendered per slice)."""

    a: float
    b_ant: float
    b_post: float
    body_p: float
    body_harm: tuple[tuple[int, float, float], ...]
    fat_mm: float
    muscle_mm: float
    warp: np.ndarray  #: [M, 6] kx, ky, kz, phase, amp_x, amp_y
    organs: dict[str, Blob]
    bowel: tuple[tuple[Blob, float], ...]  #: loop, gas level (fraction of depth; <0 none, >1 all gas)
    vessels: tuple[tuple[np.ndarray, np.ndarray, float, float], ...]
    ribs: tuple[tuple[float, float], ...]  #: angle, z-phase
    kpa: dict[str, float]
    hetero: np.ndarray  #: [M, 5] kx, ky, kz, phase, amp (relative)
    liver_mag: float
    ascites_mm: float
    variant: str
    splenomegaly: bool
    stomach_gas: float
    extras: dict = field(default_factory=dict)


def _harm(rng: np.random.Generator, ks: tuple[int, ...], amp: float) -> tuple[tuple[int, float, float], ...]:
    return tuple((k, float(rng.uniform(0, amp) / k ** 0.6), float(rng.uniform(0, 2 * np.pi))) for k in ks)


def _modes(rng: np.random.Generator, n: int, lam: tuple[float, float], amp: float, cols: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    d[:, 2] *= 0.5
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = 2 * np.pi / rng.uniform(*lam, size=n)
    out = np.column_stack([d * k[:, None], rng.uniform(0, 2 * np.pi, n)] + [rng.normal(0, amp, n) for _ in range(cols)])
    return out


def sample_anatomy(rng: np.random.Generator, liver_kpa: float, stage: int) -> Anatomy:
    """Draw a patient: body habitus, organ shapes/positions, vessels, tissue stiffness (kPa)."""
    u = rng.uniform
    a = u(128, 178)
    b_ant, b_post = a * u(0.62, 0.8), a * u(0.6, 0.74)
    fat = u(6, 34) * (a / 150) ** 1.5
    cirr = stage >= 4 and u() < 0.8
    variant = str(rng.choice(["normal", "big_left", "resected", "no_caudate"], p=[0.62, 0.18, 0.08, 0.12]))
    if cirr:
        variant = "cirrhotic"
    rl_scale = {"resected": 0.62, "cirrhotic": 0.86}.get(variant, 1.0) * u(0.9, 1.08)
    ll_scale = {"big_left": 1.45, "cirrhotic": 1.2, "resected": 1.25}.get(variant, 1.0) * u(0.85, 1.1)
    nod = _harm(rng, tuple(range(9, 17)), 0.05) if cirr else ()
    organs = {
        "liver_r": Blob(-0.47 * a + u(-8, 8), u(-0.08, 0.08) * b_post, 0.42 * a * rl_scale, 0.82 * b_post * rl_scale,
                        u(-0.25, 0.15), u(1.9, 2.6), _harm(rng, (2, 3, 4, 5), 0.12) + nod, u(-8, 8), u(85, 110), 0.45,
                        (u(0.0, 0.15), u(-0.1, 0.05))),
        "liver_l": Blob(u(0.02, 0.12) * a, -0.5 * b_ant + u(-6, 6), 0.33 * a * ll_scale, 0.26 * b_ant * ll_scale,
                        u(-0.45, -0.1), u(1.8, 2.4), _harm(rng, (2, 3, 4), 0.15) + nod, u(10, 30), u(55, 75), 0.7,
                        (u(-0.1, 0.1), 0.0)),
        "spleen": Blob(0.6 * a + u(-8, 8), 0.4 * b_post + u(-8, 8), 0.17 * a, 0.38 * b_post, u(0.5, 0.9), 2.0,
                       _harm(rng, (2, 3), 0.15), u(0, 20), u(50, 65)),
        "stomach": Blob(0.3 * a + u(-10, 10), -0.12 * b_ant + u(-10, 10), 0.22 * a, 0.3 * b_ant, u(-0.6, 0.2), 2.0,
                        _harm(rng, (2, 3, 4), 0.2), u(10, 40), u(55, 80)),
        "kidney_r": Blob(-0.4 * a, 0.56 * b_post, u(22, 28), u(40, 50), u(0.9, 1.3), 2.0, _harm(rng, (2,), 0.1),
                         u(-75, -45), 55),
        "kidney_l": Blob(0.4 * a, 0.55 * b_post, u(22, 28), u(40, 50), u(-1.3, -0.9), 2.0, _harm(rng, (2,), 0.1),
                         u(-55, -30), 55),
        "aorta": Blob(0.06 * a + u(-5, 5), 0.38 * b_post, u(9, 13), u(9, 13)),
        "ivc": Blob(-0.15 * a + u(-5, 5), 0.32 * b_post + u(-4, 4), u(11, 16), u(8, 12), u(-0.3, 0.3)),
        "spine": Blob(0.0, 0.64 * b_post, u(17, 22), u(14, 18), 0, 2.2),
        "spinous": Blob(0.0, 0.86 * b_post, 7, u(10, 14)),
        "paraspinal_r": Blob(-0.2 * a, 0.8 * b_post, 0.15 * a, 0.17 * b_post, 0.2, 2.2),
        "paraspinal_l": Blob(0.2 * a, 0.8 * b_post, 0.15 * a, 0.17 * b_post, -0.2, 2.2),
        "lung_r": Blob(-0.45 * a, 0.62 * b_post, 0.35 * a, 0.32 * b_post, 0, 2.0, (), u(110, 140), 85),
        "lung_l": Blob(0.45 * a, 0.62 * b_post, 0.35 * a, 0.32 * b_post, 0, 2.0, (), u(95, 125), 85),
        "flexure": Blob(-0.5 * a, -0.35 * b_ant, u(20, 30), u(18, 26), 0, 2.0, _harm(rng, (2, 3), 0.2), u(-60, -40), 40),
    }
    if variant not in ("no_caudate", "resected"):
        organs["caudate"] = Blob(-0.12 * a, 0.16 * b_post, 0.09 * a * (1.5 if cirr else 1.0), 0.1 * b_post,
                                 0.3, 2.0, (), u(-5, 15), u(30, 40))
    if u() < 0.75:
        organs["gallbladder"] = Blob(-0.27 * a + u(-8, 8), -0.22 * b_ant + u(-8, 8), u(12, 18), u(24, 36), u(-0.6, 0.6),
                                     2.0, _harm(rng, (2,), 0.1), u(-35, -15), u(30, 42))
    if u() < 0.15:
        organs["cyst"] = Blob(organs["liver_r"].cx + u(-20, 20), organs["liver_r"].cy + u(-30, 30), u(6, 14), u(6, 14),
                              0, 2.0, (), u(-10, 35), u(8, 15))
    splenomegaly = u() < (0.55 if stage >= 4 else 0.1)
    if splenomegaly:
        s = organs["spleen"]
        organs["spleen"] = Blob(s.cx - 10, s.cy - 5, s.ax * 1.4, s.ay * 1.35, s.angle, s.p, s.harm, s.zc, s.hz * 1.3)
    bowel = []
    for _ in range(int(rng.integers(4, 10))):
        r = u(11, 24)
        bowel.append((Blob(u(-0.45, 0.6) * a, u(-0.7, 0.25) * b_ant, r, r * u(0.7, 1.3), u(0, np.pi), 2.0,
                           _harm(rng, (2, 3), 0.2), u(-60, 20), u(20, 60)), float(rng.choice([-1, u(0.1, 0.6), 2.0],
                                                                                          p=[0.5, 0.35, 0.15]))))
    # vessels in 3-D (x, y, z mm): hepatic veins from the IVC confluence, portal tree from the hilum
    ivc = organs["ivc"]
    zc = u(45, 65)
    conf = np.array([ivc.cx, ivc.cy - 4, zc])
    vessels = []
    for ang, length, rr in ((u(3.3, 3.6), u(80, 110), u(4, 6.5)), (u(3.9, 4.3), u(70, 95), u(3.5, 5.5)),
                            (u(4.5, 5.0), u(55, 85), u(3, 5))):
        end = conf + np.array([length * np.cos(ang), length * np.sin(ang), -u(30, 60)])
        vessels.append((conf, end, rr, max(2.5, rr * 0.55)))
    hilum = np.array([-0.2 * a + u(-6, 6), 0.05 * b_post + u(-6, 6), u(-12, 4)])
    j = lambda s=8.0: rng.uniform(-s, s, 3) * np.array([1, 1, 0.6])
    pv_r = np.array([-0.45 * a, 0.0, hilum[2] + 6]) + j()
    pts = [(np.array([0.02 * a, 0.22 * b_post, hilum[2] - 30]) + j(), hilum, u(6, 7.5), u(5.5, 7)),
           (hilum, pv_r, u(4.5, 6), u(4, 5)),
           (pv_r, np.array([-0.62 * a, -0.38 * b_post, pv_r[2] + 12]) + j(), u(3.5, 4.5), 2.5),
           (pv_r, np.array([-0.66 * a, 0.35 * b_post, pv_r[2] + 8]) + j(), u(3.5, 4.5), 2.5),
           (hilum, np.array([0.05 * a, -0.28 * b_ant, hilum[2] + 15]) + j(), u(4, 5), u(3, 4)),
           (np.array([0.05 * a, -0.28 * b_ant, hilum[2] + 15]), np.array([0.22 * a, -0.5 * b_ant, hilum[2] + 25]) + j(),
            u(3, 4), 2.5)]
    vessels += pts
    spleen_kpa = float(np.clip(3.6 + 0.45 * (liver_kpa - 2.0) + rng.normal(0, 0.4), 3.5, 7.0))
    kpa = {"liver": liver_kpa, "spleen": spleen_kpa, "muscle": u(2.0, 4.0), "fat": u(1.0, 2.0),
           "bowel": u(1.0, 3.0), "stomach": u(1.0, 2.5), "viscera": u(1.2, 2.2), "kidney": u(2.5, 4.0),
           "fluid": u(0.5, 1.0), "ascites": u(0.2, 0.5)}
    # relative heterogeneity: smooth (std ~6 %) + nodular at 5-15 mm (std 3 % in F0 to 15 % in F4)
    hetero = np.concatenate([_modes(rng, 24, (25, 70), 0.06 * np.sqrt(2 / 24), 1),
                             _modes(rng, 40, (10, 30), (0.03 + 0.03 * stage) * np.sqrt(2 / 40), 1)])
    fat_frac = u(0, 0.3) if u() < 0.35 else 0.0
    iron = u() < 0.05
    liver_mag = 1.0 + 1.6 * fat_frac
    if iron:
        liver_mag *= 0.22
    ascites = u(6, 22) if u() < (0.35 if stage >= 4 else 0.08) else 0.0
    ribs = tuple((float(x), float(u(0, 2 * np.pi))) for x in np.sort(u(np.pi * 0.75, np.pi * 2.2, int(rng.integers(6, 11)))))
    return Anatomy(a, b_ant, b_post, u(2.3, 3.0), _harm(rng, (2, 3, 4), 0.04), fat, u(6, 12),
                   _modes(rng, 6, (120, 260), u(2, 5), 2), organs, tuple(bowel), tuple(vessels), ribs, kpa, hetero,
                   liver_mag, ascites, variant, splenomegaly, u(0.25, 0.5),
                   {"fat_fraction": fat_frac, "iron": iron})


@dataclass(frozen=True)
class SliceAnatomy:
    labels: np.ndarray  #: uint8 HTissue
    true_kpa: np.ndarray  #: float32 (0 where no signal)
    magnitude: np.ndarray  #: float32, relative (0..~1.5)
    liver: np.ndarray  #: bool: parenchyma + intrahepatic vessels + cysts
    right_lobe: np.ndarray
    left_lobe: np.ndarray
    vessels: np.ndarray  #: bool: intrahepatic vessels and cysts (ROI keeps away)
    gallbladder: np.ndarray
    body: np.ndarray


def _warp(an: Anatomy, x: np.ndarray, y: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    dx, dy = np.zeros_like(x), np.zeros_like(y)
    for kx, ky, kz, ph, axm, aym in an.warp:
        s = np.sin(kx * x + ky * y + kz * z + ph)
        dx += axm * s
        dy += aym * s
    return x + dx, y + dy


def _segment_dist(x: np.ndarray, y: np.ndarray, z: float, p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = p1 - p0
    px, py, pz = x - p0[0], y - p0[1], z - p0[2]
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / float(d @ d), 0, 1)
    return np.sqrt((px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2), t


def render(an: Anatomy, x: np.ndarray, y: np.ndarray, z: float, spacing: float,
           rng: np.random.Generator) -> SliceAnatomy:
    """Tissue labels, true stiffness and magnitude of one axial section at height ``z`` (mm)."""
    T = HTissue
    xw, yw = _warp(an, x, y, z)
    b = np.where(yw < 0, an.b_ant, an.b_post)
    rho = (np.abs(xw / an.a) ** an.body_p + np.abs(yw / b) ** an.body_p) ** (1 / an.body_p)
    th = np.arctan2(yw / b, xw / an.a)
    rr = 1 + sum(amp * np.cos(k * th + ph) for k, amp, ph in an.body_harm)
    body = rho < rr
    depth = ndi.distance_transform_edt(body, sampling=spacing)
    fat_t = an.fat_mm * (1 + 0.35 * np.clip(-np.sin(th), 0, 1) + 0.2 * np.cos(2 * th))
    lab = np.zeros(x.shape, np.uint8)
    lab[body] = T.FAT
    lab[body & (depth >= fat_t)] = T.MUSCLE
    cavity = body & (depth >= fat_t + an.muscle_mm)
    lab[cavity] = T.VISCERA
    o = an.organs

    def sd(name: str) -> np.ndarray | None:
        return o[name].sdf(xw, yw, z) if name in o else None

    def paint(mask: np.ndarray | None, t: HTissue, within: np.ndarray | None = cavity) -> None:
        if mask is not None:
            lab[mask & within if within is not None else mask] = t

    for loop, level in an.bowel:
        d = loop.sdf(xw, yw, z)
        if d is not None:
            m = d < 0
            paint(m, T.BOWEL)
            if level > 1:
                paint(m, T.GAS)
            elif level > 0 and m.any():
                rows = np.nonzero(m.any(1))[0]
                cut = rows[0] + level * (rows[-1] - rows[0])
                paint(m & (np.arange(x.shape[0])[:, None] < cut) & (d < -2.5), T.GAS)
    d = sd("flexure")
    if d is not None:
        paint(d < 0, T.BOWEL)
        paint(d < -4, T.GAS)
    d = sd("stomach")
    if d is not None:
        st = d < 0
        paint(st, T.STOMACH)
        if st.any():
            rows = np.nonzero(st.any(1))[0]
            paint(st & (np.arange(x.shape[0])[:, None] < rows[0] + an.stomach_gas * (rows[-1] - rows[0])) & (d < -3),
                  T.GAS)
    d = sd("spleen")
    paint(d < 0 if d is not None else None, T.SPLEEN)
    # liver: smooth union of lobes, clipped to the cavity
    parts = {k: sd(k) for k in ("liver_r", "liver_l", "caudate")}
    parts = {k: v for k, v in parts.items() if v is not None}
    right_lobe = left_lobe = np.zeros(x.shape, bool)
    liver = np.zeros(x.shape, bool)
    if parts:
        names = list(parts)
        u = parts[names[0]]
        for k in names[1:]:
            u = _smin(u, parts[k], 9.0)
        liver = (u < 0) & cavity
        stack = np.stack([parts[k] for k in names])
        owner = np.array(names)[np.argmin(stack, 0)]
        right_lobe = liver & (owner == "liver_r")
        left_lobe = liver & (owner == "liver_l")
    cyst = (sd("cyst") < 0) if sd("cyst") is not None else np.zeros(x.shape, bool)
    vess = np.zeros(x.shape, bool)
    for p0, p1, r0, r1 in an.vessels:
        dist, t = _segment_dist(xw, yw, z, p0, p1)
        vess |= dist < r0 + t * (r1 - r0)
    gb = (sd("gallbladder") < 0) & cavity if sd("gallbladder") is not None else np.zeros(x.shape, bool)
    liver &= ~gb
    lab[liver] = T.LIVER
    lab[liver & vess] = T.LIVER_VESSEL
    lab[liver & cyst] = T.CYST
    lab[vess & cavity & ~liver & (lab == T.VISCERA)] = T.PORTAL
    lab[gb] = T.GALLBLADDER
    for k in ("kidney_r", "kidney_l"):
        d = sd(k)
        if d is not None:
            lab[(d < 0) & cavity] = T.KIDNEY
    if an.ascites_mm > 0 and liver.any():
        dl = ndi.distance_transform_edt(~liver, sampling=spacing)
        dw = ndi.distance_transform_edt(cavity, sampling=spacing)
        free = np.isin(lab, [T.VISCERA, T.BOWEL]) & cavity
        lab[free & ((dl < an.ascites_mm) | ((dw < an.ascites_mm * 0.6) & (xw < 0.3 * an.a)))] = T.ASCITES
    for k, t in (("aorta", T.AORTA), ("ivc", T.IVC), ("paraspinal_r", T.MUSCLE), ("paraspinal_l", T.MUSCLE),
                 ("spine", T.BONE), ("spinous", T.BONE)):
        d = sd(k)
        if d is not None:
            lab[(d < 0) & body] = t
    for k in ("lung_r", "lung_l"):
        d = sd(k)
        if d is not None:
            lab[(d < 0) & cavity & (lab != T.LIVER) & (lab != T.SPLEEN)] = T.LUNG
    rib_r = an.fat_mm + an.muscle_mm * 0.5
    for ang, zph in an.ribs:
        if np.sin(z / 22.0 + zph) < -0.2:  # ribs slope: present in some sections only
            continue
        cx = np.cos(ang) * (an.a - rib_r * 1.3)
        cy = np.sin(ang) * ((an.b_ant if np.sin(ang) < 0 else an.b_post) - rib_r * 1.3)
        lab[((xw - cx) ** 2 + (yw - cy) ** 2 < 25.0) & body] = T.BONE
    # liver lost to other organs
    liver = np.isin(lab, [T.LIVER, T.LIVER_VESSEL, T.CYST])
    right_lobe &= liver
    left_lobe &= liver
    vessels = np.isin(lab, [T.LIVER_VESSEL, T.CYST])
    # true stiffness (kPa)
    k = an.kpa
    table = np.zeros(len(HTissue), np.float32)
    for t, v in ((T.FAT, k["fat"]), (T.MUSCLE, k["muscle"]), (T.VISCERA, k["viscera"]), (T.LIVER, k["liver"]),
                 (T.STOMACH, k["stomach"]), (T.BOWEL, k["bowel"]), (T.SPLEEN, k["spleen"]), (T.KIDNEY, k["kidney"]),
                 (T.LIVER_VESSEL, k["fluid"]), (T.CYST, k["fluid"]), (T.GALLBLADDER, k["fluid"]),
                 (T.AORTA, k["fluid"]), (T.IVC, k["fluid"]), (T.PORTAL, k["fluid"]), (T.ASCITES, k["ascites"])):
        table[t] = v
    g = table[lab]
    par = lab == T.LIVER
    if par.any():
        h = np.zeros(x.shape)
        for kx, ky, kz, ph, amp in an.hetero:
            h += amp * np.cos(kx * x + ky * y + kz * z + ph)
        g = np.where(par, k["liver"] * np.clip(1 + h, 0.6, 1.6), g).astype(np.float32)
    # magnitude: tissue contrast, surface-coil bias, texture
    mtab = np.array([_MAG[HTissue(i)] for i in range(len(HTissue))], np.float32)
    mag = mtab[lab]
    mag = np.where(par | (lab == T.LIVER_VESSEL), mag * an.liver_mag, mag)
    coil = 0.75 + 0.6 * np.exp(-depth / 70.0)
    tex = ndi.gaussian_filter(rng.normal(0, 1, x.shape), 2.0 / spacing + 0.5)
    mag = ndi.gaussian_filter(mag * coil * (1 + 0.25 * tex / (tex.std() + 1e-9)), 0.6)
    return SliceAnatomy(lab, g.astype(np.float32), mag.astype(np.float32), liver, right_lobe, left_lobe,
                        vessels, lab == T.GALLBLADDER, body)
