"""Render fields of view of a simulated Human Protein Atlas screen (four channels, a few cells).

One image shows a few cultured human cells stained as in the HPA (Thul et al. 2017):
red microtubules, green the antibody against the protein, blue the nucleus, yellow the
endoplasmic reticulum. All cells of an image express one protein, and the image is
labelled with that protein's locations (image-level multi-label, as the Kaggle set).

Generative model of a field (lengths scale with ``size / 128``)
-------------------------------------------------------------
1. **Cells.** Large flat cells: star-shaped outlines (radius ``cell_radius`` x 0.85-1.2 with
   random 2nd-4th harmonics), centres drawn uniformly over and slightly beyond the
   field, at least 1.2 radii apart; where two outlines overlap each pixel goes to the
   cell it is deeper in. A big elliptical nucleus (0.36-0.46 of the radius, off-centre),
   two to four nucleoli in it, and a centrosome just outside it.
2. **Reference channels.** Blue: the nucleus, dimmer in the nucleoli. Red: microtubules,
   about 26 curved filaments radiating from the centrosome. Yellow: the ER, a network
   from the zero crossings of band-limited noise, densest around the nucleus, plus the
   nuclear envelope.
3. **Protein channel.** The sum of the patterns of the protein's locations
   (:data:`PATTERNS`), each scaled to mean 1 over its own support (a concentration, as in
   :mod:`protrep.data.render`), times the cell's expression (log-normal, 35% cell to cell),
   plus a small diffuse cytosolic fraction.
4. **Optics and camera** as in :mod:`protrep.data.render`: Gaussian PSF plus per-field defocus,
   per-plate background, gain and vignetting (:func:`protrep.data.render.plate_params`),
   Poisson-Gaussian camera noise, offset, 16-bit clipping.

The spot, ring and texture helpers are those of the yeast simulator
(:mod:`protrep.data.render`), which this module only imports.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..config import Config, check_int, check_number
from .render import _ring, _spots, _texture

__all__ = ["HumanFieldParams", "PATTERNS", "REFERENCE_CHANNELS", "simulate_human_field"]

#: Channel order of a rendered field, as the HPA's: microtubules, protein, nucleus, ER.
REFERENCE_CHANNELS = ("red", "green", "blue", "yellow")

#: HPA classes the simulator draws (names as :data:`protrep.data.hpa.HPA_CLASSES`).
PATTERNS = ("Nucleoplasm", "Nuclear membrane", "Nucleoli", "Nucleoli fibrillar center", "Nuclear speckles",
            "Nuclear bodies", "Endoplasmic reticulum", "Golgi apparatus", "Actin filaments", "Microtubules",
            "Centrosome", "Plasma membrane", "Mitochondria", "Cytosol")


@dataclass(frozen=True)
class HumanFieldParams(Config):
    """Imaging model of a human-cell field.

    Attributes
    ----------
    size : int
        Field side in pixels (Kaggle HPA images: 512).
    cells_per_field : float
        Mean number of cell centres in the field (Poisson, at least 2).
    cell_radius : float
        Mean cell radius in pixels at ``size`` 128 (scaled with the size).
    photons_protein, photons_reference : float
        Photons per pixel of a mean-intensity structure.
    psf_sigma, defocus_sd : float
        Gaussian PSF width and per-field defocus spread, px at size 128.
    read_noise, offset, adu_per_photon : float
        Camera read noise (ADU), offset (ADU) and conversion gain.
    """

    size: int = 128
    cells_per_field: float = 4.0
    cell_radius: float = 30.0
    photons_protein: float = 120.0
    photons_reference: float = 150.0
    psf_sigma: float = 0.7
    defocus_sd: float = 0.3
    read_noise: float = 4.0
    offset: float = 100.0
    adu_per_photon: float = 1.0

    def __post_init__(self):
        check_int(self, "size", low=16)
        check_number(self, "cell_radius", "adu_per_photon", low=0.0, strict_low=True)
        check_number(self, "cells_per_field", "photons_protein", "photons_reference", "psf_sigma", "defocus_sd",
                     "read_noise", "offset", low=0.0)


def _cells(rng, p, s):
    """Centres, radii, outline harmonics, nuclei, nucleoli and centrosomes of one field's cells."""
    n_want = max(2, int(rng.poisson(p.cells_per_field)))
    r0 = p.cell_radius * s
    xy, radius = [], []
    for _ in range(40 * n_want):
        if len(xy) == n_want:
            break
        c = rng.uniform(-0.1 * p.size, 1.1 * p.size, 2)
        r = r0 * rng.uniform(0.85, 1.2)
        if all(np.hypot(*(c - q)) > 1.2 * max(r, rq) for q, rq in zip(xy, radius)):
            xy.append(c)
            radius.append(r)
    n = len(xy)
    xy, radius = np.array(xy, np.float32), np.array(radius, np.float32)
    harm = rng.uniform(0, 1, (n, 3)) * np.array([0.2, 0.1, 0.06])
    phase = rng.uniform(0, 2 * np.pi, (n, 3))
    ang = rng.uniform(0, 2 * np.pi, n)
    off = radius * rng.uniform(0, 0.22, n)
    nuc = xy + np.stack([np.cos(ang), np.sin(ang)], 1) * off[:, None]
    na = radius * rng.uniform(0.36, 0.46, n)
    nb = na * rng.uniform(0.75, 1.0, n)
    nth = rng.uniform(0, np.pi, n)
    psi = rng.uniform(0, 2 * np.pi, n)
    mtoc = nuc + np.stack([np.cos(psi), np.sin(psi)], 1) * (1.15 * na)[:, None]
    k_nucleoli = rng.integers(2, 5, n)
    nr = np.sqrt(rng.uniform(0, 0.3, (n, 4))) * na[:, None]
    nphi = rng.uniform(0, 2 * np.pi, (n, 4))
    nucleoli = np.stack([nuc[:, 0, None] + nr * np.cos(nphi), nuc[:, 1, None] + nr * np.sin(nphi)], -1)
    return {"n": n, "xy": xy, "radius": radius, "harm": harm, "phase": phase, "nuc": nuc, "na": na, "nb": nb,
            "nth": nth, "psi": psi, "mtoc": mtoc, "nucleoli": nucleoli.astype(np.float32),
            "nucleoli_on": np.arange(4)[None, :] < k_nucleoli[:, None]}


def _geometry(c, size):
    """Per-cell maps over the field, (n, size, size): occupancy, nucleus, cytoplasm, distances."""
    ax = np.arange(size, dtype=np.float32)
    X, Y = ax[None, None, :], ax[:, None][None]
    dx, dy = X - c["xy"][:, 0, None, None], Y - c["xy"][:, 1, None, None]
    theta = np.arctan2(dy, dx)
    shape = 1 + sum(c["harm"][:, k, None, None] * np.cos((k + 2) * theta - c["phase"][:, k, None, None])
                    for k in range(3))
    r_edge = c["radius"][:, None, None] * shape
    rho = np.hypot(dx, dy) / r_edge
    owner = np.argmin(rho, axis=0)
    mine = owner[None] == np.arange(c["n"])[:, None, None]
    depth = (1 - rho) * r_edge  # px inside the outline
    occ = np.clip(depth + 0.5, 0, 1) * mine
    ndx, ndy = X - c["nuc"][:, 0, None, None], Y - c["nuc"][:, 1, None, None]
    ct, st = np.cos(c["nth"])[:, None, None], np.sin(c["nth"])[:, None, None]
    u, v = (ndx * ct + ndy * st) / c["na"][:, None, None], (-ndx * st + ndy * ct) / c["nb"][:, None, None]
    rho_n = np.hypot(u, v)
    nuc_depth = (1 - rho_n) * c["nb"][:, None, None]
    nuc = np.clip(nuc_depth + 0.5, 0, 1) * occ
    mdx, mdy = X - c["mtoc"][:, 0, None, None], Y - c["mtoc"][:, 1, None, None]
    return {"X": X, "Y": Y, "owner": owner, "occ": occ, "depth": depth, "nuc": nuc, "cyto": occ * (1 - nuc),
            "nuc_depth": nuc_depth,
            "rho_n": rho_n, "m_dist": np.hypot(mdx, mdy), "m_angle": np.arctan2(mdy, mdx)}


def _field_spots(g, px, py, weight, sigma):
    """Gaussian spots at absolute field positions (n, k): (n, size, size), with :func:`protrep.data.render._spots`."""
    n = px.shape[0]
    size = g["X"].shape[-1]
    coords = {"dx": np.broadcast_to(g["X"], (n, 1, size)), "dy": np.broadcast_to(g["Y"][..., :1], (n, size, 1))}
    return _spots(coords, np.arange(n), px.astype(np.float32), py.astype(np.float32), weight.astype(np.float32),
                  np.asarray(sigma, np.float32))


def _in_nucleus(rng, c, k, spread=0.8):
    """``k`` random points per cell inside its nucleus, (n, k) x and y."""
    r = np.sqrt(rng.uniform(0, spread ** 2, (c["n"], k)))
    a = rng.uniform(0, 2 * np.pi, (c["n"], k))
    u, v = r * np.cos(a) * c["na"][:, None], r * np.sin(a) * c["nb"][:, None]
    ct, st = np.cos(c["nth"])[:, None], np.sin(c["nth"])[:, None]
    return c["nuc"][:, 0, None] + u * ct - v * st, c["nuc"][:, 1, None] + u * st + v * ct


def _microtubules(rng, c, g, s):
    """Filaments radiating from each centrosome, slightly curved: (n, size, size).

    Evaluated once per pixel for the cell that owns it (not for every cell), which keeps
    the 26 filaments per cell cheap at 512 x 512.
    """
    k = 26
    phi = rng.uniform(0, 2 * np.pi, (c["n"], k)).astype(np.float32)
    bend = (rng.normal(0, 0.25, (c["n"], k)) / c["radius"][:, None]).astype(np.float32)
    own = g["owner"]
    d = np.take_along_axis(g["m_dist"], own[None], 0)[0]
    a = np.take_along_axis(g["m_angle"], own[None], 0)[0]
    rel = np.mod(a[None] - np.moveaxis(phi[own], -1, 0) - np.moveaxis(bend[own], -1, 0) * d[None] + np.pi,
                 2 * np.pi) - np.pi
    lines = np.exp(-(d[None] * rel) ** 2 / (2 * (0.6 * s) ** 2)).sum(0)
    return (0.25 + np.minimum(lines, 2.0))[None] * g["cyto"] \
        + 2 * np.exp(-g["m_dist"] ** 2 / (2 * (1.5 * s) ** 2)) * g["occ"]


def _er(g, ridge, c):
    """ER network, denser near the nucleus, plus the nuclear envelope: (n, size, size)."""
    net = np.exp(-(ridge / 0.35) ** 2)[None]
    near = 0.35 + 0.65 * np.exp(-np.clip(-g["nuc_depth"], 0, None) / (0.4 * c["radius"][:, None, None]))
    envelope = _ring(g["nuc_depth"], np.full(c["n"], 0.8, np.float32))
    return (net * near + 0.2) * g["cyto"] + 0.8 * envelope * g["occ"]


def _pattern(name, rng, c, g, tex, s, refs):
    """Unnormalised protein pattern of location ``name`` in every cell: (n, size, size)."""
    n = c["n"]
    nucleoli = refs["nucleoli"]
    if name == "Nucleoplasm":
        return g["nuc"] * (1 - 0.8 * nucleoli) * _texture(tex["fine"][None], 0.25)
    if name == "Nuclear membrane":
        rim = _ring(g["nuc_depth"], np.full(n, 0.7 * s + 0.3, np.float32))
        return rim * _texture(tex["fine"][None], 0.5) * g["occ"]
    if name == "Nucleoli":
        return nucleoli * g["nuc"]
    if name == "Nucleoli fibrillar center":
        px = c["nucleoli"][:, :, None, 0] + rng.normal(0, 0.05, (n, 4, 4)) * c["na"][:, None, None]
        py = c["nucleoli"][:, :, None, 1] + rng.normal(0, 0.05, (n, 4, 4)) * c["na"][:, None, None]
        w = np.repeat(c["nucleoli_on"], 4, axis=1) * rng.uniform(0.6, 1, (n, 16))
        return _field_spots(g, px.reshape(n, 16), py.reshape(n, 16), w, np.full(n, 0.6 * s + 0.2)) * g["nuc"]
    if name == "Nuclear speckles":
        px, py = _in_nucleus(rng, c, 20, 0.8)
        w = (np.arange(20)[None] < rng.integers(10, 21, (n, 1))) * rng.uniform(0.4, 1, (n, 20))
        return (_field_spots(g, px, py, w, np.full(n, 1.1 * s)) + 0.15) * g["nuc"] * (1 - 0.8 * nucleoli)
    if name == "Nuclear bodies":
        px, py = _in_nucleus(rng, c, 8, 0.75)
        w = (np.arange(8)[None] < rng.integers(2, 9, (n, 1))).astype(np.float32)
        return _field_spots(g, px, py, w, np.full(n, 0.6 * s + 0.2)) * g["nuc"]
    if name == "Endoplasmic reticulum":
        return refs["er"] * _texture(tex["fine"][None], 0.2)
    if name == "Golgi apparatus":  # compact ribbon of puncta beside the nucleus, on the centrosome's side
        k = 14
        a = c["psi"][:, None] + rng.normal(0, 0.45, (n, k))
        r = c["na"][:, None] * rng.uniform(1.05, 1.5, (n, k))
        px, py = c["nuc"][:, 0, None] + r * np.cos(a), c["nuc"][:, 1, None] + r * np.sin(a)
        return _field_spots(g, px, py, rng.uniform(0.5, 1, (n, k)), np.full(n, 1.0 * s)) * g["cyto"]
    if name == "Actin filaments":  # stress fibres: parallel straight bundles, and the cortex
        ang = rng.uniform(0, np.pi, n)[:, None, None]
        along = g["X"] * np.cos(ang) + g["Y"] * np.sin(ang)
        spacing = 4.5 * s * rng.uniform(0.8, 1.2, n)[:, None, None]
        phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
        fibres = np.clip(np.cos(2 * np.pi * along / spacing + phase + 0.8 * tex["ridge"][None]), 0, None) ** 6
        return (fibres + 0.8 * _ring(g["depth"] - 1.5 * s, np.full(n, 1.2 * s, np.float32))) * g["occ"]
    if name == "Microtubules":
        return refs["mt"]
    if name == "Centrosome":
        px = c["mtoc"][:, 0, None] + np.array([0.0, 1.6]) * s * np.cos(c["psi"])[:, None]
        py = c["mtoc"][:, 1, None] + np.array([0.0, 1.6]) * s * np.sin(c["psi"])[:, None]
        return _field_spots(g, px, py, np.ones((n, 2)), np.full(n, 0.7 * s + 0.2)) * np.clip(g["depth"] + 3, 0, 1)
    if name == "Plasma membrane":
        return _ring(g["depth"] - 1.0 * s, np.full(n, 0.8 * s + 0.3, np.float32)) * g["occ"] \
            * _texture(tex["fine"][None], 0.3)
    if name == "Mitochondria":
        tubes = np.exp(-(tex["ridge2"] / 0.3) ** 2)[None]
        near = 0.3 + 0.7 * np.exp(-np.clip(-g["nuc_depth"], 0, None) / (0.5 * c["radius"][:, None, None]))
        return tubes * near * g["cyto"]
    if name == "Cytosol":
        return g["cyto"] * _texture(tex["fine"][None], 0.2)
    raise ValueError(f"no simulated pattern for {name!r}; simulated locations are {list(PATTERNS)}")


def _camera(rng, photons, params):
    """Poisson-Gaussian camera (photon and read noise in one normal draw), offset, 16-bit counts."""
    sd = np.sqrt(photons * params.adu_per_photon ** 2 + params.read_noise ** 2)
    adu = photons * params.adu_per_photon + sd * rng.standard_normal(photons.shape, dtype=np.float32)
    return np.clip(np.rint(adu + params.offset), 0, 65535).astype(np.uint16)


def simulate_human_field(rng, locations, plate, params=HumanFieldParams(), *, weights=None, expression=1.0):
    """Simulate one four-channel field of human cells expressing one protein.

    Parameters
    ----------
    rng : numpy.random.Generator
    locations : sequence of str
        The protein's locations, names of :data:`PATTERNS`.
    plate : protrep.data.render.PlateParams
        Plate nuisance (:func:`protrep.data.render.plate_params`): gain, background, vignetting,
        defocus.
    params : HumanFieldParams
    weights : sequence of float, optional
        Concentration of the protein at each location (default 1 each).
    expression : float
        The protein's abundance, a factor on its photons.

    Returns
    -------
    dict
        ``image`` uint16 (4, size, size) in channel order :data:`REFERENCE_CHANNELS`;
        ``mask`` bool (size, size), the pixels inside cells; ``n_cells`` int.
    """
    size = params.size
    s = size / 128
    c = _cells(rng, params, s)
    g = _geometry(c, size)
    white = rng.standard_normal((3, size, size)).astype(np.float32)
    tex = {"fine": ndimage.gaussian_filter(white[0], 1.0 * s), "ridge": ndimage.gaussian_filter(white[1], 2.0 * s),
           "ridge2": ndimage.gaussian_filter(white[2], 1.6 * s)}
    for k in tex:
        tex[k] /= tex[k].std() + 1e-12
    nucleoli = np.clip(_field_spots(g, c["nucleoli"][..., 0], c["nucleoli"][..., 1], c["nucleoli_on"],
                                    0.16 * c["na"]) * 1.3, 0, 1)
    refs = {"nucleoli": nucleoli, "mt": _microtubules(rng, c, g, s), "er": _er(g, tex["ridge"], c)}
    blue = g["nuc"] * (1 - 0.55 * nucleoli) * _texture(tex["fine"][None], 0.12)

    weights = np.ones(len(locations)) if weights is None else np.asarray(weights, float)
    green = np.zeros_like(g["occ"])
    for name, w in zip(locations, weights):
        pat = _pattern(name, rng, c, g, tex, s, refs)
        support = (pat > 0.2 * pat.max(axis=(1, 2), keepdims=True)).sum(axis=(1, 2), keepdims=True)
        green += w * pat * support / (pat.sum(axis=(1, 2), keepdims=True) + 1e-6)
    green = green + 0.03 * g["cyto"]
    cell_expr = expression * np.exp(rng.normal(0, 0.35, c["n"])).astype(np.float32)
    canvas = np.stack([(m * f[:, None, None]).sum(0) if f is not None else m.sum(0)
                       for m, f in ((refs["mt"], None), (green, cell_expr), (blue, None), (refs["er"], None))])

    sigma = (params.psf_sigma + abs(plate.defocus * 0.5 + rng.normal(0, params.defocus_sd))) * s
    blurred = ndimage.gaussian_filter(canvas, (0, sigma, sigma), mode="constant", truncate=3.0)
    yy, xx = np.ogrid[:size, :size]
    vignette = (1 - plate.vignetting * ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2) ** 2 / 2)
    photons_per = np.array([params.photons_reference, params.photons_protein, params.photons_reference,
                            params.photons_reference], np.float32)[:, None, None]
    background = np.array([plate.background_rfp * 0.4, plate.background_gfp, plate.background_rfp * 0.3,
                           plate.background_rfp * 0.4], np.float32)[:, None, None]
    photons = np.maximum((blurred * photons_per + background) * vignette.astype(np.float32) * plate.gain, 0)
    return {"image": _camera(rng, photons, params), "mask": g["occ"].sum(0) > 0.5, "n_cells": int(c["n"])}
