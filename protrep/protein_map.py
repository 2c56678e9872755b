"""An interactive map of protein embeddings: t-SNE, nearest neighbours and cell thumbnails.

Every protein is a point of a t-SNE map of its protein embedding (one table per model,
in the layout of :mod:`protrep.data.tables`), coloured by its localization. Hovering a
point shows the protein, its annotated localization, its nearest neighbours by cosine
similarity in the *full* embedding (the ranking that chapter 4's AP scores, not distances
on the map) and a thumbnail of one of its cells; a menu switches between models, whose
coordinates and neighbours are all computed here, so the page needs no kernel.

The map is a bokeh document with its JavaScript inlined (:data:`bokeh.resources.INLINE`):
it works offline, in a notebook and in the built book, and loads nothing from the
network. :func:`show_map` displays it inside an ``<iframe srcdoc=...>``, which Jupyter
Book copies into the page as it is. Size: 1.65 MB of bokeh JavaScript, plus about 1.6 kB
of thumbnail per protein (48 px, 64 colours) and 200 bytes per protein and model: 60
proteins and five models make a 1.8 MB page, 600 proteins 3.2 MB (3.5 MB in the iframe).

Plain functions on tables; nothing here imports torch.
"""

import base64
import html
import io
import logging

import numpy as np
import pandas as pd

from .data.tables import embedding_features

__all__ = ["map_coordinates", "nearest_neighbours", "thumbnails", "protein_map", "map_html", "show_map",
           "MIN_PROTEINS"]

logger = logging.getLogger(__name__)

#: Fewest proteins a map is drawn for (t-SNE needs a perplexity below the number of points).
MIN_PROTEINS = 3
# t-SNE of fewer proteins runs on one thread: there OpenMP's threads cost more than they save
# (60 proteins: 0.5 s on one thread, 15-20 s on two busy cores).
_THREADED_FROM = 1000
#: A transparent 1 x 1 GIF: the thumbnail of a protein that has none.
_BLANK = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
_TOOLTIP = """
<div style="max-width: 330px; font-size: 12px;">
  <div style="display: flex; gap: 8px; align-items: flex-start;">
    <img src="@thumbnail" alt="" style="width: 96px; height: auto; border: 1px solid #ccc;">
    <div><b>@protein</b><br>@localization</div>
  </div>
  <div style="margin-top: 4px; white-space: pre-line;">nearest by cosine (full embedding):
@neighbours</div>
</div>
"""
# Swaps the shown model's columns into x, y and neighbours; every model's columns are in the source.
_SWITCH = """
const model = cb_obj.value;
const d = source.data;
source.data = Object.assign({}, d, {x: d["x:" + model], y: d["y:" + model], neighbours: d["neighbours:" + model]});
plot.title.text = title_prefix + model;
"""


def _vectors(table, name="table"):
    """Protein ids (str) and float64 features of a protein table, checked."""
    if not isinstance(table, pd.DataFrame) or "protein" not in table.columns:
        raise ValueError(f"{name}: expected a protein table (a DataFrame with a 'protein' column and feature "
                         "columns f0000 ..., as protrep.data.tables.embedding_tables returns)")
    features = embedding_features(table)
    ids = table["protein"].astype(str).to_numpy()
    if len(ids) < MIN_PROTEINS:
        raise ValueError(f"{name}: {len(ids)} protein(s); a map needs at least {MIN_PROTEINS}")
    repeated = pd.unique(ids[pd.Series(ids).duplicated().to_numpy()])
    if len(repeated):
        raise ValueError(f"{name}: proteins repeat ({repeated[:5].tolist()}); give one row per protein (the mean "
                         "of its cells, as embedding_tables' protein table)")
    X = table[features].to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        bad = ids[~np.isfinite(X).all(axis=1)]
        raise ValueError(f"{name}: proteins with NaN or infinite features: {bad[:5].tolist()}; fix or drop them")
    return ids, X


def _unit_rows(X, *, standardize=False):
    """Rows scaled to length 1 (after an optional z-score of every feature across proteins); zero rows stay 0."""
    if standardize:
        sd = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def map_coordinates(table, *, seed=0, perplexity=None, standardize=False):
    """Two-dimensional t-SNE coordinates of the proteins of a protein table.

    The rows are scaled to unit length first, so that the Euclidean distances t-SNE
    works on are a monotone function of the cosine similarity that retrieval ranks by
    (``|a - b|^2 = 2 - 2 cos(a, b)`` for unit vectors).

    Parameters
    ----------
    table : DataFrame, p rows
        A ``protein`` column (unique ids) and feature columns (``f0000`` ..., or every
        numeric column but the metadata: :func:`protrep.data.tables.embedding_features`).
    seed : int
        ``random_state`` of :class:`sklearn.manifold.TSNE`: the same seed gives the same map.
    perplexity : float, optional
        Default ``min(30, max(2, (p - 1) / 3))``, below the number of proteins as
        t-SNE requires; a given value must lie in (0, p).
    standardize : bool
        z-score every feature across proteins before scaling the rows (as chapter 4's
        ``standardize`` does before the cosine similarity).

    Returns
    -------
    DataFrame
        ``protein``, ``x``, ``y`` (float64), one row per protein in the table's order.
        Distances on the map are not the cosine ranking: t-SNE keeps neighbourhoods, not
        distances, and the scale of its axes means nothing.

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_PROTEINS` proteins, repeated proteins, no feature column,
        non-finite features, or a perplexity outside (0, p).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    ids, X = _vectors(table)
    n = len(ids)
    if perplexity is None:
        perplexity = min(30.0, max(2.0, (n - 1) / 3))
    if not 0 < perplexity < n:
        raise ValueError(f"perplexity must lie between 0 and the number of proteins ({n}); got {perplexity}")
    X = _unit_rows(X, standardize=standardize)
    tsne = TSNE(n_components=2, perplexity=float(perplexity), init="pca" if X.shape[1] >= 2 else "random",
                random_state=seed)
    with threadpool_limits(1 if n < _THREADED_FROM else None, user_api="openmp"):
        xy = tsne.fit_transform(X)
    return pd.DataFrame({"protein": ids, "x": xy[:, 0].astype(np.float64), "y": xy[:, 1].astype(np.float64)})


def nearest_neighbours(table, *, k=5, standardize=False):
    """The ``k`` most cosine-similar other proteins of every protein, in the full embedding.

    Parameters
    ----------
    table : DataFrame, p rows
        A protein table, as for :func:`map_coordinates`.
    k : int
        Neighbours per protein, between 1 and p - 1.
    standardize : bool
        z-score every feature across proteins first (chapter 4's ``standardize``).

    Returns
    -------
    DataFrame, p * k rows
        ``protein``, ``rank`` (1 = most similar), ``neighbour`` and ``similarity`` (cosine,
        in [-1, 1], higher = more similar; a zero vector has similarity 0 to every
        protein), ordered by the table's proteins, then rank. Ties keep the table's order.

    Raises
    ------
    ValueError
        A bad table (see :func:`map_coordinates`) or ``k`` outside [1, p - 1].
    """
    ids, X = _vectors(table)
    n = len(ids)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an integer between 1 and {n - 1} (the other proteins); got {k!r}")
    U = _unit_rows(X, standardize=standardize)
    sim = U @ U.T
    np.fill_diagonal(sim, -np.inf)  # never one's own neighbour
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return pd.DataFrame({"protein": np.repeat(ids, k), "rank": np.tile(np.arange(1, k + 1), n),
                         "neighbour": ids[order].ravel(),
                         "similarity": np.take_along_axis(sim, order, axis=1).ravel()})


def _png_uri(rgb, size, colors):
    """A ``data:image/png;base64`` URI of an (h, w, 3) image in [0, 1], its longer side ``size`` pixels."""
    from PIL import Image

    image = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    if colors is not None:  # a palette PNG: 40% of the bytes; octree keeps the rare bright puncta, median cut not
        image = image.quantize(colors=colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnails(ds, proteins=None, *, size=48, colors=64, seed=0):
    """A small composite image of one cell of every protein, as PNG ``data:`` URIs.

    Parameters
    ----------
    ds : CellDataset
        Crops ``(n, c, h, w)`` with a ``protein`` column in ``ds.meta`` and channel names
        ``ds.channels`` (GFP green and RFP magenta, HPA channels in the HPA's colours:
        :func:`protrep.plotting.composite`). Sharded datasets read only the chosen crops.
    proteins : sequence of str, optional
        The proteins to show (default: every protein of ``ds``).
    size : int
        Length in pixels of the thumbnail's longer side (square crops: ``size`` x ``size``).
    colors : int or None
        Colours of the PNG palette (2 to 256); None keeps full RGB (about twice the bytes).
    seed : int
        Which cell of each protein is shown (one drawn at random per protein).

    Returns
    -------
    dict of str to str
        Protein id to ``"data:image/png;base64,..."``, in the order of ``proteins``.

    Raises
    ------
    ValueError
        A protein with no cell in ``ds``, a ``size`` below 4, or ``colors`` outside [2, 256].
    """
    from .plotting import composite

    if not isinstance(size, (int, np.integer)) or size < 4:
        raise ValueError(f"size must be an integer of at least 4 pixels; got {size!r}")
    if colors is not None and not 2 <= colors <= 256:
        raise ValueError(f"colors must lie between 2 and 256, or be None (full RGB); got {colors!r}")
    cells = ds.meta["protein"].astype(str).to_numpy()
    shuffled = np.random.default_rng(seed).permutation(len(cells))
    names, first = np.unique(cells[shuffled], return_index=True)
    chosen = dict(zip(names, shuffled[first]))  # a random cell of every protein
    proteins = list(names) if proteins is None else [str(p) for p in proteins]
    missing = [p for p in proteins if p not in chosen]
    if missing:
        raise ValueError(f"{len(missing)} protein(s) have no cell in the dataset: {missing[:5]}")
    return {p: _png_uri(composite(np.asarray(ds.images[int(chosen[p])], dtype=np.float32), channels=ds.channels),
                        size, colors) for p in proteins}


def _aligned(tables, common):
    """Every table restricted to one common, ordered set of proteins; ValueError if they differ."""
    if not isinstance(tables, dict) or not tables:
        raise ValueError("tables must be a non-empty dict of model name to protein table")
    ids = {name: _vectors(t, name)[0] for name, t in tables.items()}
    first = next(iter(ids))
    shared = [p for p in ids[first] if all(p in set(v) for v in ids.values())]
    differ = {name: len(set(v) ^ set(ids[first])) for name, v in ids.items() if set(v) != set(ids[first])}
    if differ and not common:
        raise ValueError(f"the models embed different proteins ({differ} proteins differ from {first!r}'s); give "
                         "tables of the same proteins, or common=True to map the proteins they share")
    if differ:
        logger.warning("mapping the %d proteins every model embeds (%s differ from %r's)", len(shared), differ, first)
    if len(shared) < MIN_PROTEINS:
        raise ValueError(f"the models share {len(shared)} protein(s); a map needs at least {MIN_PROTEINS}")
    return shared, {name: t.iloc[pd.Index(ids[name]).get_indexer(shared)].reset_index(drop=True)
                    for name, t in tables.items()}


def _neighbour_text(table, labels, k, standardize):
    """One line per neighbour (name, label, cosine) for every protein, as plain text."""
    near = nearest_neighbours(table, k=k, standardize=standardize)
    lines = [f"{n} ({labels.get(n, 'unknown')}) {s:.2f}" for n, s in zip(near["neighbour"], near["similarity"])]
    return near.assign(line=lines).groupby("protein", sort=False)["line"].agg("\n".join)


def _text(values, proteins, default):
    """``{protein: str}`` of a Series or dict, missing or empty values from ``default`` (else "unknown")."""
    values = pd.Series(values, dtype=object).reindex(proteins)
    return {p: str(v) if pd.notna(v) and str(v) else default.get(p, "unknown") for p, v in values.items()}


def _palette(n):
    from bokeh.palettes import Category10, Category20, Turbo256

    if n <= 10:
        return list(Category10[10][:n])
    if n <= 20:
        return list(Category20[20][:n])
    return [Turbo256[int(i)] for i in np.linspace(0, 255, n)]


def _columns(tables, shared, labels, localization, thumbs, *, seed, k, standardize, perplexity):
    """The ColumnDataSource's data: per-protein columns and every model's x, y and neighbours."""
    data = {"protein": shared, "label": [labels[p] for p in shared],
            "localization": [localization[p] for p in shared],
            "thumbnail": [thumbs.get(p) or _BLANK for p in shared]}
    for name, table in tables.items():
        xy = map_coordinates(table, seed=seed, perplexity=perplexity, standardize=standardize)
        xy[["x", "y"]] -= xy[["x", "y"]].mean()
        xy[["x", "y"]] /= max(float(np.abs(xy[["x", "y"]].to_numpy()).max()), 1e-12)  # every model in [-1, 1]
        data[f"x:{name}"], data[f"y:{name}"] = xy["x"].to_numpy(np.float32), xy["y"].to_numpy(np.float32)
        data[f"neighbours:{name}"] = _neighbour_text(table, labels, k, standardize).loc[shared].tolist()
    first = next(iter(tables))
    data.update(x=data[f"x:{first}"], y=data[f"y:{first}"], neighbours=data[f"neighbours:{first}"])
    return data


def protein_map(tables, labels, thumbnails=None, *, localization=None, seed=0, k=5, standardize=False,
                perplexity=None, common=False, width=None, height=520, title="protein embeddings (t-SNE): "):
    """An interactive t-SNE map of the proteins, one view per model, as a bokeh layout.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Model name to protein table (:func:`map_coordinates`); the first is shown first.
        All must embed the same proteins (see ``common``).
    labels : Series or dict, protein to str
        The class each protein is coloured by (e.g. its primary compartment); proteins
        without one are ``"unknown"``.
    thumbnails : dict of str to str, optional
        Protein to image URI (:func:`thumbnails`), shown in the hover; proteins without one
        show none.
    localization : Series or dict, protein to str, optional
        The annotated localization shown in the hover (default: ``labels``).
    seed, perplexity, standardize
        As for :func:`map_coordinates` (``standardize`` also for the neighbours).
    k : int
        Nearest neighbours shown per protein (at most p - 1), by cosine similarity in the
        full embedding (:func:`nearest_neighbours`).
    common : bool
        Map only the proteins every table has (the others are dropped, with a logged
        warning) instead of raising when the tables differ.
    width, height : int
        Size of the plot in pixels; ``width=None`` stretches it to the page's width.
    title : str
        Put before the model's name above the plot.

    Returns
    -------
    bokeh.models.Column
        A ``Select`` of the models above the map; switching runs in the browser (a
        ``CustomJS`` callback swaps precomputed columns), so no kernel is needed.
        :func:`map_html` or :func:`show_map` turn it into a page.

    Raises
    ------
    ValueError
        No tables, a bad table, tables of different proteins (unless ``common``), or
        fewer than :data:`MIN_PROTEINS` proteins.
    """
    from bokeh.layouts import column
    from bokeh.models import CDSView, ColumnDataSource, CustomJS, GroupFilter, HoverTool, Range1d, Select
    from bokeh.plotting import figure

    shared, tables = _aligned(tables, common)
    labels = _text(labels, shared, {})
    localization = labels if localization is None else _text(localization, shared, labels)
    k = min(k, len(shared) - 1)
    source = ColumnDataSource(_columns(tables, shared, labels, localization, thumbnails or {}, seed=seed, k=k,
                                       standardize=standardize, perplexity=perplexity))
    first = next(iter(tables))
    plot = figure(title=title + first, height=height, tools="pan,wheel_zoom,box_zoom,reset,save",
                  x_range=Range1d(-1.1, 1.1), y_range=Range1d(-1.1, 1.1), toolbar_location="above",
                  **({"width": width} if width else {"sizing_mode": "stretch_width"}))
    classes = sorted(set(labels.values()), key=lambda c: (c == "unknown", c.lower()))
    renderers = [plot.scatter("x", "y", source=source, view=CDSView(filter=GroupFilter(column_name="label", group=c)),
                              size=7, color=color, alpha=0.8, legend_label=c)
                 for c, color in zip(classes, _palette(len(classes)))]
    plot.add_tools(HoverTool(renderers=renderers, tooltips=_TOOLTIP))
    plot.xaxis.visible = plot.yaxis.visible = False
    plot.grid.visible = False
    plot.legend.click_policy = "hide"
    plot.legend.label_text_font_size = "9pt"
    plot.add_layout(plot.legend[0], "right")
    select = Select(title="model", value=first, options=list(tables), width=220)
    select.js_on_change("value", CustomJS(args={"source": source, "plot": plot, "title_prefix": title},
                                          code=_SWITCH))
    return column(select, plot, sizing_mode="stretch_width" if not width else None)


def map_html(layout, *, title="protein map"):
    """A standalone HTML page of a bokeh layout with every script inlined (nothing from a CDN)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    return file_html(layout, INLINE, title=title)


def show_map(layout, *, height=620, title="protein map"):
    """Display a bokeh layout in a notebook, inside an ``<iframe srcdoc=...>`` holding :func:`map_html`.

    The iframe keeps the page working wherever the output is shown: in Jupyter, and in
    the static HTML of Jupyter Book, which copies the output into the page as it is
    (bokeh's own notebook output needs the live notebook's JavaScript). The frame is
    ``height`` pixels high (the plot, the menu and the toolbar) and as wide as the page.

    Returns
    -------
    None
        Like ``plt.show``; :func:`map_html` gives the page itself.
    """
    from IPython.display import HTML, display

    page = html.escape(map_html(layout, title=title), quote=True)
    frame = HTML(f'<div><iframe srcdoc="{page}" title="{html.escape(title)}" '  # a bare <iframe> makes IPython warn
                 f'style="width: 100%; height: {int(height)}px; border: none;"></iframe></div>')
    display(frame)
