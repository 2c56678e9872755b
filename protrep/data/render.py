"""Render fields of view of a simulated ORF-GFP yeast screen.

One field shows cells of one well (one GFP-tagged protein) in two channels: GFP (the
protein) and RFP (a free cytosolic marker, as in the WT2 screen of Chong et al. 2015).

Generative model of a field
---------------------------
1. **Cells.** Cluster centres are drawn uniformly; cells are placed around them (normal
   spread) without overlapping, until the target density is reached. A mother cell is an
   ellipse (semi-major axis ``cell_radius`` +- ``cell_radius_sd`` px, aspect 0.82-1.0,
   random angle); a fraction ``bud_fraction`` carries a round bud (0.3-0.75 of the mother
   radius) at one pole. Each mother has a nucleus (0.30-0.38 of the radius, off-centre)
   and a vacuole on the far side (0.28-0.45 of the radius). A few cells are dead (bright
   uniform autofluorescence) or ghosts (empty, dim walls).
2. **Patterns.** Each class is a function of that geometry and four protein traits (see
   :mod:`protrep.data.proteome`): puncta (actin patches, endosome, Golgi, peroxisome, spindle
   pole) as sums of Gaussian spots in class-specific regions, rims (cell periphery,
   nuclear periphery, vacuolar membrane, ER), filled compartments (cytoplasm, nucleus,
   vacuole, nucleolus crescent), a bar at the mother-bud junction (bud neck) and tubular
   networks from ridges of band-limited noise (mitochondrion). Each pattern is scaled to
   mean 1 over its own support (a concentration), so the localization weights of a
   multi-localized protein are concentration ratios (a cytoplasm + nucleus protein is
   about as bright in both, as in real images); the cell's total is then set to its
   expression (the protein's abundance, with 30% log-normal cell-to-cell variation) and
   mixed with a diffuse cytosolic fraction (trait 3).
3. **Optics and camera.** Gaussian point-spread function plus per-field defocus; per
   plate illumination falloff (vignetting), background and gain; Poisson photon noise;
   Gaussian read noise (together: the Poisson-Gaussian camera model); camera offset;
   16-bit clipping.

Nuisance (plate, field, expression, position) is drawn independently of protein function.

A *mixed well* (``neighbour=`` of :func:`simulate_field`, as in pooled or co-culture
screens) shows a second protein in a share of its cells; each cell takes traits,
localization and expression from the protein it expresses (see :mod:`protrep.data.mixed`).
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..config import Config, check_int, check_number, check_share
from .proteome import CLASSES

__all__ = ["FieldParams", "PlateParams", "TextureBank", "simulate_field", "plate_params"]

_PATCH = 80  # side of the square in which one cell (mother + bud) is rendered


@dataclass(frozen=True)
class PlateParams:
    """Plate-level nuisance: illumination and background differ from plate to plate."""

    gain: float
    background_gfp: float
    background_rfp: float
    vignetting: float
    defocus: float


@dataclass(frozen=True)
class FieldParams(Config):
    """Parameters of the imaging model (photons, optics, camera, cells).

    Attributes
    ----------
    size : int
        Field side in pixels.
    density : float
        Fraction of the field covered by cells.
    clusters_per_100k_px : float
        Number of cell clusters per 100,000 px of field.
    cell_radius, cell_radius_sd : float
        Mean and spread of the mother cell's semi-major axis, px.
    bud_fraction, dead_fraction, ghost_fraction : float
        Fractions of budded, dead and ghost cells.
    photons_gfp, photons_rfp : float
        Photons per pixel of a mean-intensity cell at median expression.
    psf_sigma, defocus_sd : float
        Gaussian PSF width and per-field defocus spread, px.
    read_noise, offset, adu_per_photon : float
        Camera read noise (ADU), offset (ADU) and conversion gain.
    exact_poisson : bool
        Draw photon counts from the Poisson distribution. By default photon and read
        noise are drawn together from the normal distribution with the same mean and
        variance (the Poisson-Gaussian camera model), 6x faster; the two differ only in
        skewness, visible below about 10 photons per pixel.
    """

    size: int = 512
    density: float = 0.26
    clusters_per_100k_px: float = 2.0
    cell_radius: float = 19.0
    cell_radius_sd: float = 2.2
    bud_fraction: float = 0.35
    dead_fraction: float = 0.02
    ghost_fraction: float = 0.02
    photons_gfp: float = 130.0
    photons_rfp: float = 200.0
    psf_sigma: float = 1.0
    defocus_sd: float = 0.5
    read_noise: float = 4.0
    offset: float = 100.0
    adu_per_photon: float = 1.0
    exact_poisson: bool = False

    def __post_init__(self):
        check_int(self, "size", low=16)
        check_number(self, "cell_radius", "adu_per_photon", low=0.0, strict_low=True)
        check_number(self, "density", "clusters_per_100k_px", "cell_radius_sd", "photons_gfp", "photons_rfp",
                     "psf_sigma", "defocus_sd", "read_noise", "offset", low=0.0)
        check_share(self, "bud_fraction", "dead_fraction", "ghost_fraction")
        if not isinstance(self.exact_poisson, bool):
            raise ValueError(f"exact_poisson must be True or False, got {self.exact_poisson!r}")


def plate_params(rng):
    """Draw one plate's nuisance parameters."""
    return PlateParams(
        gain=float(rng.uniform(0.75, 1.3)),
        background_gfp=float(rng.uniform(14, 30)),
        background_rfp=float(rng.uniform(45, 90)),
        vignetting=float(rng.uniform(0.1, 0.35)),
        defocus=float(rng.uniform(0.0, 0.8)),
    )


class TextureBank:
    """Band-limited noise textures shared by all cells (built once per seed).

    ``fine`` textures (correlation ~2 px) give granularity and pores; ``ridge`` fields
    (correlation ~5 px) give tubular networks where they cross zero.
    """

    def __init__(self, seed=0, n=48, size=_PATCH):
        rng = np.random.default_rng([seed, 7])
        white = rng.standard_normal((2, n, size, size)).astype(np.float32)
        self.fine = ndimage.gaussian_filter(white[0], (0, 1.5, 1.5))
        self.fine /= self.fine.std(axis=(1, 2), keepdims=True)
        self.ridge = ndimage.gaussian_filter(white[1], (0, 4.0, 4.0))
        self.ridge /= self.ridge.std(axis=(1, 2), keepdims=True)
        self.n = n

    def draw(self, rng, m, kind):
        """``m`` textures of one kind, each randomly flipped and transposed."""
        bank = getattr(self, kind)
        t = bank[rng.integers(0, self.n, m)]
        flips = rng.random((3, m)) < 0.5
        t[flips[0]] = t[flips[0], ::-1]
        t[flips[1]] = t[flips[1], :, ::-1]
        t[flips[2]] = np.swapaxes(t[flips[2]], 1, 2)
        return t


# ----------------------------------------------------------------------------- cells
def _place_cells(rng, p):
    """Centres and shapes of non-overlapping, clustered cells."""
    area = p.size * p.size
    n_target = max(1, int(rng.poisson(p.density * area / (np.pi * p.cell_radius ** 2 * 0.91))))
    n_clusters = max(1, int(rng.poisson(p.clusters_per_100k_px * area / 1e5)))
    centres = rng.uniform(0, p.size, (n_clusters, 2))
    spread = np.sqrt(area / n_clusters) * 0.35
    margin = 8
    n_try = 30 * n_target
    cand = centres[rng.integers(n_clusters, size=n_try)] + rng.normal(0, spread, (n_try, 2))
    radius = np.clip(rng.normal(p.cell_radius, p.cell_radius_sd, n_try), p.cell_radius * 0.7, p.cell_radius * 1.4)
    ok = np.all((cand >= margin) & (cand < p.size - margin), axis=1)
    cand, radius = cand[ok], radius[ok]
    xs = np.empty((n_target, 2))
    rs = np.empty(n_target)
    n = 0
    for x, r in zip(cand, radius):
        if n >= n_target:
            break
        if n:
            d2 = ((xs[:n] - x) ** 2).sum(axis=1)
            if (d2 < (0.97 * (rs[:n] + r)) ** 2).any():
                continue
        xs[n], rs[n] = x, r
        n += 1
    xs, rs = xs[:n], rs[:n]
    xy = np.asarray(xs, np.float32).reshape(n, 2)
    a = np.asarray(rs, np.float32)
    b = a * rng.uniform(0.82, 1.0, n).astype(np.float32)
    theta = rng.uniform(0, np.pi, n).astype(np.float32)
    budded = rng.random(n) < p.bud_fraction
    rb_max = np.maximum((_PATCH / 2 - 3 - a) / 1.75, 1)
    rb = np.where(budded, np.minimum(a * rng.uniform(0.3, 0.75, n), rb_max), 0).astype(np.float32)
    phi = (theta + rng.choice([0, np.pi], n) + rng.normal(0, 0.25, n)).astype(np.float32)
    return {"xy": xy, "a": a, "b": b, "theta": theta, "budded": budded, "rb": rb, "phi": phi}


def _geometry(rng, cells):
    """Per-cell coordinate maps in a (n, P, P) patch centred on the mother's centre."""
    n = len(cells["a"])
    frac = cells["xy"] - np.floor(cells["xy"])
    ax = np.arange(_PATCH, dtype=np.float32) - _PATCH // 2
    dx = ax[None, None, :] - frac[:, 0, None, None]
    dy = ax[None, :, None] - frac[:, 1, None, None]
    a, b, th = cells["a"][:, None, None], cells["b"][:, None, None], cells["theta"][:, None, None]
    c, s = np.cos(th), np.sin(th)
    u = (dx * (c / a) + dy * (s / a)) ** 2
    u += (dy * (c / b) - dx * (s / b)) ** 2
    rm = np.sqrt(u, out=u)
    depth_m = (1 - rm) * b  # px inside the mother's wall (approximately)
    rb = cells["rb"][:, None, None]
    phi = cells["phi"][:, None, None]
    # the mother's radius along phi, for the bud's attachment point
    cu, cv = np.cos(phi - th) / a, np.sin(phi - th) / b
    r_phi = 1 / np.sqrt(cu * cu + cv * cv)
    bx, by = np.cos(phi) * (r_phi + 0.7 * rb), np.sin(phi) * (r_phi + 0.7 * rb)
    has_bud = rb > 0
    depth = depth_m
    j = np.flatnonzero(cells["budded"])  # the bud's depth, only where there is a bud
    depth[j] = np.maximum(depth_m[j], rb[j] - np.sqrt((dx[j] - bx[j]) ** 2 + (dy[j] - by[j]) ** 2))
    occ = np.clip(depth + 0.5, 0, 1)
    # nucleus, off-centre; vacuole on the far side
    a1 = cells["a"]
    ang = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    off = (a1 * rng.uniform(0.25, 0.42, n)).astype(np.float32)
    nx, ny = np.cos(ang) * off, np.sin(ang) * off
    rn = (a1 * rng.uniform(0.25, 0.32, n)).astype(np.float32)
    voff = (a1 * rng.uniform(0.2, 0.38, n)).astype(np.float32)
    vx, vy = -np.cos(ang) * voff, -np.sin(ang) * voff
    rv = (a1 * rng.uniform(0.35, 0.55, n)).astype(np.float32)
    gap = np.hypot(nx - vx, ny - vy) - rn + 0.1 * a1  # a vacuole may press on the nucleus
    rv = np.clip(np.minimum(np.minimum(rv, gap), a1 * 0.8 - voff), a1 * 0.2, None)  # a rim of cytoplasm
    d_nuc = np.sqrt((dx - nx[:, None, None]) ** 2 + (dy - ny[:, None, None]) ** 2)
    d_vac = np.sqrt((dx - vx[:, None, None]) ** 2 + (dy - vy[:, None, None]) ** 2)
    nuc = np.clip(rn[:, None, None] - d_nuc + 0.5, 0, 1) * occ
    vac = np.clip(rv[:, None, None] - d_vac + 0.5, 0, 1) * occ
    cyto = occ * (1 - nuc) * (1 - vac)
    return {
        "dx": dx, "dy": dy, "rm": rm, "depth": depth, "occ": occ, "nuc": nuc, "vac": vac, "cyto": cyto,
        "d_nuc": d_nuc, "d_vac": d_vac, "rn": rn, "rv": rv, "nuc_xy": np.stack([nx, ny], 1),
        "vac_xy": np.stack([vx, vy], 1), "bud_xy": np.stack([bx[:, 0, 0], by[:, 0, 0]], 1),
        "has_bud": has_bud[:, 0, 0], "rb": cells["rb"], "a": a1, "b": cells["b"], "theta": cells["theta"],
        "phi": cells["phi"], "r_phi": r_phi[:, 0, 0],
    }


# ----------------------------------------------------------------------------- patterns
def _spots(g, idx, px, py, weight, sigma):
    """Sum of Gaussian spots at (px, py) (m, K), rendered separably: (m, P, P)."""
    xs = g["dx"][idx, 0, :]  # x coordinate of every column (constant along rows)
    ys = g["dy"][idx, :, 0]
    s2 = 2 * np.asarray(sigma, np.float32)[:, None, None] ** 2
    gx = np.exp(-(xs[:, None, :] - px[:, :, None]) ** 2 / s2)
    gy = np.exp(-(ys[:, None, :] - py[:, :, None]) ** 2 / s2)
    return np.einsum("mky,mkx->myx", gy * weight[:, :, None], gx, optimize=False)


def _cell_points(rng, g, idx, k, r_lo, r_hi, polar):
    """``k`` points per cell at relative radius [r_lo, r_hi] of the mother, biased to the bud."""
    m = len(idx)
    rr = np.sqrt(rng.uniform(r_lo ** 2, r_hi ** 2, (m, k)))
    kappa = (8 * polar)[:, None] * np.ones((m, k))
    ang = g["phi"][idx, None] + rng.vonmises(0, np.maximum(kappa, 1e-3))
    local = ang - g["theta"][idx, None]
    u, v = rr * np.cos(local), rr * np.sin(local)
    th = g["theta"][idx, None]
    a, b = g["a"][idx, None], g["b"][idx, None]
    px = a * u * np.cos(th) - b * v * np.sin(th)
    py = a * u * np.sin(th) + b * v * np.cos(th)
    return px.astype(np.float32), py.astype(np.float32)


def _active(rng, counts, k):
    w = rng.uniform(0.5, 1.0, (len(counts), k)).astype(np.float32)
    return w * (np.arange(k)[None, :] < counts[:, None])


def _texture(noise, amplitude):
    """Multiplicative texture ``1 + amplitude * noise``, kept non-negative."""
    amplitude = np.asarray(amplitude, np.float32).reshape(-1, 1, 1) if np.ndim(amplitude) else amplitude
    return np.clip(1 + amplitude * noise, 0, None)


def _ring(dist, width):
    return np.exp(-(dist ** 2) / (2 * np.asarray(width, np.float32)[:, None, None] ** 2))


def _pattern(name, rng, g, idx, t, bank):
    """Unnormalised GFP pattern of class ``name`` for cells ``idx`` with traits ``t`` (m, 4)."""
    m = len(idx)
    occ, nuc, vac, cyto = g["occ"][idx], g["nuc"][idx], g["vac"][idx], g["cyto"][idx]
    t0, t1, t2 = t[:, 0], t[:, 1], t[:, 2]
    if name == "cytoplasm":
        return cyto * _texture(bank.draw(rng, m, "fine"), 0.15 + 0.35 * t0)
    if name == "nucleus":
        return nuc * _texture(bank.draw(rng, m, "fine"), 0.2)
    if name == "vacuole":
        return vac * _texture(bank.draw(rng, m, "fine"), 0.1 + 0.2 * t0)
    if name == "nucleolus":
        ang = rng.uniform(0, 2 * np.pi, m)
        rn = g["rn"][idx]
        cx = g["nuc_xy"][idx, 0] + 0.5 * rn * np.cos(ang)
        cy = g["nuc_xy"][idx, 1] + 0.5 * rn * np.sin(ang)
        blob = _spots(g, idx, cx[:, None], cy[:, None], np.ones((m, 1), np.float32), rn * (0.45 + 0.3 * t1))
        return blob * nuc
    if name == "nuclear periphery":
        pores = _texture(bank.draw(rng, m, "fine"), 0.8)
        return _ring(g["d_nuc"][idx] - g["rn"][idx, None, None], 0.8 + 0.8 * t1) * pores * occ
    if name == "vacuolar membrane":
        return _ring(g["d_vac"][idx] - g["rv"][idx, None, None], 0.7 + 0.8 * t1) * occ
    if name == "cell periphery":
        return _ring(g["depth"][idx] - 1.2, 0.7 + 0.9 * t1) * occ * (1 + 0.6 * t2[:, None, None] * np.clip(
            g["dx"][idx] * np.cos(g["phi"][idx])[:, None, None] + g["dy"][idx] * np.sin(g["phi"][idx])[:, None, None],
            0, None) / g["a"][idx, None, None])
    if name == "ER":
        cortical = _ring(g["depth"][idx] - 1.0, 0.6 + 0.5 * t1) * _texture(bank.draw(rng, m, "fine"), 0.7)
        nuclear = _ring(g["d_nuc"][idx] - g["rn"][idx, None, None], 0.7 + 0.5 * t1)
        strands = np.exp(-(bank.draw(rng, m, "ridge") / 0.25) ** 2) * cyto * 0.25
        return (cortical + (0.6 + 0.6 * t0)[:, None, None] * nuclear + strands) * occ
    if name == "mitochondrion":
        ridge = bank.draw(rng, m, "ridge")
        width = (0.18 + 0.3 * t0)[:, None, None]
        tubes = np.exp(-(ridge / width) ** 2)
        cortex = np.clip(1.3 - np.abs(g["depth"][idx] - (2.5 + 4 * t1)[:, None, None]) / 4, 0, 1)
        return tubes * cortex * occ * (1 - nuc) * (1 - 0.9 * vac)
    if name == "bud neck":
        phi = g["phi"][idx, None, None]
        r_phi = g["r_phi"][idx, None, None]
        along = g["dx"][idx] * np.cos(phi) + g["dy"][idx] * np.sin(phi) - r_phi
        across = -g["dx"][idx] * np.sin(phi) + g["dy"][idx] * np.cos(phi)
        half = np.where(g["has_bud"][idx], 0.75 * g["rb"][idx], 0.25 * g["a"][idx])[:, None, None]
        bar = np.exp(-along ** 2 / (2 * (0.8 + 0.8 * t1)[:, None, None] ** 2)) * np.clip(half - np.abs(across) + 1, 0, 1)
        return bar * np.where(g["has_bud"][idx], 1.0, 0.35)[:, None, None] * np.clip(g["depth"][idx] + 2, 0, 1)
    if name == "spindle pole":
        n_dots = np.where(g["has_bud"][idx], 2, 1)
        ang = rng.uniform(0, 2 * np.pi, m)
        rn = g["rn"][idx] * 0.9
        px = g["nuc_xy"][idx, 0, None] + rn[:, None] * np.cos(ang[:, None] + np.array([0, np.pi]))
        py = g["nuc_xy"][idx, 1, None] + rn[:, None] * np.sin(ang[:, None] + np.array([0, np.pi]))
        w = (np.arange(2)[None, :] < n_dots[:, None]).astype(np.float32)
        return _spots(g, idx, px.astype(np.float32), py.astype(np.float32), w, 0.7 + 0.4 * t1)
    # punctate classes
    spec = {  # name: (min count, extra count, r_lo, r_hi, sigma0, sigma1)
        "Golgi": (3, 9, 0.2, 0.85, 0.9, 0.9),
        "peroxisome": (2, 7, 0.2, 0.85, 0.7, 0.5),
        "endosome": (2, 5, 0.2, 0.8, 0.9, 0.8),
        "actin": (6, 14, 0.72, 0.93, 0.8, 0.6),
    }[name]
    k = spec[0] + spec[1]
    counts = spec[0] + np.round(spec[1] * t0).astype(int)
    px, py = _cell_points(rng, g, idx, k, spec[2], spec[3], t2 if name != "actin" else 0.3 + 0.7 * t2)
    if name == "endosome":  # around the vacuole
        ang = rng.uniform(0, 2 * np.pi, (m, k))
        rr = g["rv"][idx, None] * rng.uniform(1.0, 1.5, (m, k)) + 1
        px = (g["vac_xy"][idx, 0, None] + rr * np.cos(ang)).astype(np.float32)
        py = (g["vac_xy"][idx, 1, None] + rr * np.sin(ang)).astype(np.float32)
    if name == "actin":  # patches in the bud's cortex, cables along the axis
        in_bud = (rng.random((m, k)) < 0.6) & g["has_bud"][idx, None]
        ang = rng.uniform(0, 2 * np.pi, (m, k))
        rr = g["rb"][idx, None] * rng.uniform(0.6, 0.9, (m, k))
        px = np.where(in_bud, g["bud_xy"][idx, 0, None] + rr * np.cos(ang), px).astype(np.float32)
        py = np.where(in_bud, g["bud_xy"][idx, 1, None] + rr * np.sin(ang), py).astype(np.float32)
    spots = _spots(g, idx, px, py, _active(rng, counts, k), spec[4] + spec[5] * t1)
    return spots * np.clip(g["depth"][idx] + 1.5, 0, 1)


# ----------------------------------------------------------------------------- field
def _cell_mixture(rng, proteins_row, n):
    """Per-cell class weights (n, n_classes) and each cell's own label."""
    k = len(CLASSES)
    w = np.zeros((n, k), np.float32)
    p = CLASSES.index(proteins_row["primary"])
    s = CLASSES.index(proteins_row["secondary"]) if proteins_row["secondary"] else -1
    if s < 0:
        w[:, p] = 1
    elif proteins_row["heterogeneous"]:
        pick = rng.random(n) < proteins_row["weight"]
        w[pick, p] = 1
        w[~pick, s] = 1
    else:
        w[:, p] = proteins_row["weight"]
        w[:, s] = 1 - proteins_row["weight"]
    if proteins_row["mislocalizing"]:
        mis = rng.random(n) < 0.2
        w[mis] = 0
        w[mis, CLASSES.index("cytoplasm")] = 1
    return w, np.argmax(w, axis=1)


def _expression(protein):
    """Median expression of a protein's cells, relative to a protein of abundance 2000."""
    return float(np.clip(protein["abundance"] / 2000.0, 0.01, 100)) ** 0.5


def _cell_proteins(rng, proteins, expresses):
    """Per-cell traits (n, 4), class weights (n, n_classes), own labels (n,) and expression (n,).

    Cell ``i`` takes everything from ``proteins[expresses[i]]``; the random draws are those
    of a one-protein field when ``proteins`` holds one protein.
    """
    n = len(expresses)
    traits = np.array([[p[f"trait_{j}"] for j in range(4)] for p in proteins], np.float32)[expresses]
    t = np.clip(traits + rng.normal(0, 0.05, (n, 4)), 0, 1).astype(np.float32)
    weights = np.zeros((n, len(CLASSES)), np.float32)
    label = np.zeros(n, np.intp)
    for k, protein in enumerate(proteins):
        idx = np.flatnonzero(expresses == k)
        weights[idx], label[idx] = _cell_mixture(rng, protein, len(idx))
    expr = np.array([_expression(p) for p in proteins], np.float32)[expresses]
    return t, weights, label, expr


def _cell_signals(rng, g, t, weights, alive, bank):
    """GFP and RFP of every cell (n, P, P) before expression: patterns, concentrations, leak, marker."""
    n = len(t)
    occ_sum = g["occ"].sum(axis=(1, 2)) + 1e-6
    cyto_norm = g["cyto"] / (g["cyto"].sum(axis=(1, 2)) / occ_sum)[:, None, None]
    gfp = np.zeros_like(g["occ"])
    for k in np.flatnonzero(weights[alive].any(axis=0)):
        idx = np.flatnonzero(alive & (weights[:, k] > 0))
        pat = _pattern(CLASSES[k], rng, g, idx, t[idx], bank)
        support = (pat > 0.2 * pat.max(axis=(1, 2), keepdims=True)).sum(axis=(1, 2), keepdims=True)
        pat *= support / (pat.sum(axis=(1, 2), keepdims=True) + 1e-6)  # mean 1 where it is: a concentration
        gfp[idx] += weights[idx, k, None, None] * pat
    # weights set concentration ratios between compartments; each cell's total is its expression
    gfp *= (occ_sum / (gfp.sum(axis=(1, 2)) + 1e-6))[:, None, None]
    leak = (0.03 + 0.25 * t[:, 3])[:, None, None]
    gfp = (1 - leak) * gfp + leak * cyto_norm
    rfp = g["cyto"] + 0.75 * g["nuc"] + 0.3 * g["vac"]
    rfp = rfp * _texture(bank.draw(rng, n, "fine"), 0.08)
    return gfp, rfp


def _paste(cells, g, gfp, rfp, size):
    """Cell patches pasted into a (2, size, size) canvas and the true label image (size, size)."""
    h = _PATCH // 2
    canvas = np.zeros((2, size + _PATCH, size + _PATCH), np.float32)
    labels = np.zeros((size + _PATCH, size + _PATCH), np.int32)
    corner = np.floor(cells["xy"]).astype(int)
    for i in range(len(corner)):
        x0, y0 = corner[i]
        sl = (slice(y0, y0 + _PATCH), slice(x0, x0 + _PATCH))
        canvas[0][sl] += gfp[i]
        canvas[1][sl] += rfp[i]
        mine = (g["occ"][i] > 0.5) & (labels[sl] == 0)
        labels[sl][mine] = i + 1
    return canvas[:, h:h + size, h:h + size], labels[h:h + size, h:h + size]


def _camera(rng, canvas, plate, params):
    """Optics (PSF, defocus, vignetting) and camera (photon and read noise, offset, 16 bits): uint16 image."""
    size = params.size
    sigma = params.psf_sigma + abs(plate.defocus + rng.normal(0, params.defocus_sd))
    blurred = ndimage.gaussian_filter(canvas, (0, sigma, sigma), mode="constant", truncate=3.0)
    yy, xx = np.ogrid[:size, :size]
    rad2 = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2) ** 2 / 2
    vignette = (1 - plate.vignetting * rad2).astype(np.float32)
    photons = np.stack([
        (blurred[0] * params.photons_gfp + plate.background_gfp) * vignette * plate.gain,
        (blurred[1] * params.photons_rfp + plate.background_rfp) * vignette * plate.gain,
    ])
    photons = np.maximum(photons, 0)
    if params.exact_poisson:
        counts = rng.poisson(photons).astype(np.float32)
        adu = counts * params.adu_per_photon + rng.normal(0, params.read_noise, counts.shape).astype(np.float32)
    else:  # Poisson-Gaussian camera model: photon and read noise in one normal draw, same mean and variance
        sd = np.sqrt(photons * params.adu_per_photon ** 2 + params.read_noise ** 2)
        adu = photons * params.adu_per_photon + sd * rng.standard_normal(photons.shape, dtype=np.float32)
    adu += params.offset
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)


def simulate_field(rng, protein, plate, params=FieldParams(), bank=None, *, neighbour=None, neighbour_share=0.5):
    """Simulate one field of view of a well expressing ``protein``.

    Parameters
    ----------
    rng : numpy.random.Generator
    protein : mapping
        A row of a proteome table (:func:`protrep.data.proteome.synthetic_proteome`).
    plate : PlateParams
    params : FieldParams
    bank : TextureBank, optional
    neighbour : mapping, optional, keyword-only
        Another row of the proteome table: a mixed well (as in pooled or co-culture
        screens), where each cell independently expresses ``neighbour`` with probability
        ``neighbour_share``, else ``protein``. Traits, localization and expression of a
        cell come from the protein it expresses. None (the default): every cell expresses
        ``protein``, with exactly the random draws of a field of an ordinary well.
    neighbour_share : float, keyword-only
        In [0, 1]; used only with ``neighbour``.

    Returns
    -------
    dict
        ``image`` uint16 (2, size, size) in channel order (gfp, rfp); ``labels`` int32
        (size, size) true cell labels (0 = background, cell i has label i + 1); ``label``
        int (n,) the class index each cell shows (-1 for dead and ghost cells); ``state``
        (n,) of "alive", "dead", "ghost"; ``xy`` float (n, 2) mother centres;
        ``expresses`` int (n,): 0 for cells expressing ``protein``, 1 for ``neighbour``;
        ``n_cells``.
    """
    if neighbour is not None and not 0 <= neighbour_share <= 1:
        raise ValueError(f"neighbour_share must be in [0, 1], got {neighbour_share!r}")
    bank = bank or TextureBank()
    cells = _place_cells(rng, params)
    n = len(cells["a"])
    g = _geometry(rng, cells)
    if neighbour is None:  # no draw: an ordinary well's field, to the byte
        proteins, expresses = (protein,), np.zeros(n, np.intp)
    else:
        proteins, expresses = (protein, neighbour), (rng.random(n) < neighbour_share).astype(np.intp)
    t, weights, label, expr = _cell_proteins(rng, proteins, expresses)
    state = np.full(n, "alive", dtype=object)
    r = rng.random(n)
    state[r < params.dead_fraction] = "dead"
    state[(r >= params.dead_fraction) & (r < params.dead_fraction + params.ghost_fraction)] = "ghost"
    alive = state == "alive"

    gfp, rfp = _cell_signals(rng, g, t, weights, alive, bank)
    gfp *= (expr * np.exp(rng.normal(0, 0.3, n)).astype(np.float32))[:, None, None]
    dead = state == "dead"
    gfp[dead] = g["occ"][dead] * rng.uniform(1.5, 4.0, (dead.sum(), 1, 1))
    rfp[dead] = g["occ"][dead] * 0.3
    ghost = state == "ghost"
    wall = _ring(g["depth"][ghost] - 1, np.full(ghost.sum(), 1.0)) * g["occ"][ghost]
    gfp[ghost] = 0.15 * wall
    rfp[ghost] = 0.12 * g["occ"][ghost] + 0.2 * wall
    label = np.where(alive, label, -1)

    canvas, labels = _paste(cells, g, gfp, rfp, params.size)
    image = _camera(rng, canvas, plate, params)
    return {"image": image, "labels": labels, "label": label.astype(int), "state": state,
            "xy": cells["xy"], "n_cells": n, "expresses": expresses.astype(int)}
