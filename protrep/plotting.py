"""Plots for the book: each function takes data and ``ax=None`` and returns the Axes.

Importing this module sets the book's one theme (:func:`set_theme`, seaborn's ``ticks``
style and colour-blind palette), so every chapter's figures look alike. Statistical
figures that seaborn draws well go through it: heat maps (:func:`heatmap`,
:func:`confusion`) and distributions compared between groups (:func:`group_histogram`).
Intervals that protrep computes itself (paired bootstrap intervals over proteins and
seeds: :func:`paired_differences`, :func:`interval_forest`, :func:`setting_lines`) are
drawn as given with matplotlib's error bars, in the same theme: seaborn's own interval
plots would re-estimate them from raw values, without the pairing.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

__all__ = ["paired_differences", "set_theme", "group_histogram",
           "composite", "montage", "class_montage", "outlines", "bar_counts", "training_curves", "confusion",
           "distributions", "ap_bars", "setting_lines", "interval_forest", "heatmap", "quality_curves", "phase_diagram",
           "METHOD_COLORS"]


def set_theme():
    """The book's theme: seaborn ``ticks`` with light grid lines, colour-blind palette, compact fonts.

    Called once when :mod:`protrep.plotting` is imported; call it again after changing
    matplotlib's settings to return to the book's look.
    """
    sns.set_theme(context="notebook", style="ticks", palette="colorblind", font_scale=0.85,
                  rc={"axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
                      "figure.dpi": 100, "savefig.dpi": 100, "legend.frameon": False, "image.cmap": "viridis"})


set_theme()


def _stretch(x, lo=0.5, hi=99.8):
    a, b = np.percentile(x, [lo, hi])
    return np.clip((x - a) / max(b - a, 1e-12), 0, 1)


def composite(crop, *, channels=("gfp", "rfp")):
    """RGB image of a (c, h, w) crop: GFP green, RFP magenta, each stretched to its 0.5-99.8 percentiles.

    HPA channels (``red``, ``green``, ``blue``, ``yellow``) are shown in the HPA's colours,
    the protein (green) brightest.

    Single-channel crops are shown in grey.
    """
    crop = np.asarray(crop, float)
    if crop.ndim == 2 or crop.shape[0] == 1:
        g = _stretch(crop.reshape(crop.shape[-2:]))
        return np.stack([g, g, g], -1)
    names = list(channels)
    if "green" in names:  # HPA images: red microtubules, green protein, blue nucleus, yellow ER (red + green)
        rgb = [_stretch(crop[names.index(c)]) if c in names else np.zeros(crop.shape[-2:])
               for c in ("red", "green", "blue")]
        if "yellow" in names and crop[names.index("yellow")].any():
            y = _stretch(crop[names.index("yellow")])
            rgb = [0.6 * rgb[0] + 0.4 * y, rgb[1] + 0.3 * y, rgb[2]]
        return np.clip(np.stack([0.5 * rgb[0], rgb[1], 0.7 * rgb[2]], -1), 0, 1)
    g = _stretch(crop[names.index("gfp")] if "gfp" in names else crop[0])
    r = _stretch(crop[names.index("rfp")] if "rfp" in names else crop[1])
    return np.stack([0.6 * r, g, 0.6 * r], -1)


def montage(images, *, ncols=8, titles=None, channels=("gfp", "rfp"), ax=None, gap=2):
    """Tile crops (n, c, h, w) into one image, shown as GFP/RFP composites.

    Returns
    -------
    matplotlib.axes.Axes
    """
    images = np.asarray(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    h, w = images.shape[-2:]
    canvas = np.ones((nrows * (h + gap) - gap, ncols * (w + gap) - gap, 3))
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = composite(im, channels=channels)
    if ax is None:
        _, ax = plt.subplots(figsize=(ncols * 0.9, nrows * 0.9))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    if titles is not None:
        for i, t in enumerate(titles):
            r, c = divmod(i, ncols)
            ax.text(c * (w + gap) + 2, r * (h + gap) + 8, str(t), color="w", fontsize=6)
    return ax


def class_montage(images, labels, classes, *, per_class=6, seed=0, channels=("gfp", "rfp"), ax=None):
    """One row of example crops per class (cells whose own label is that class).

    Parameters
    ----------
    images : ndarray (n, c, h, w)
    labels : ndarray of int (n,)
        Class index per crop, -1 for unknown.
    classes : sequence of str
    per_class : int
        Crops per row (fewer if a class has fewer cells).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    h, w = images.shape[-2:]
    rows = []
    for k in range(len(classes)):
        idx = np.flatnonzero(labels == k)
        pick = rng.choice(idx, min(per_class, len(idx)), replace=False) if len(idx) else []
        row = np.zeros((per_class, *images.shape[1:]), images.dtype)
        row[:len(pick)] = images[np.sort(pick)] if len(pick) else row[:0]
        rows.append(row)
    ax = montage(np.concatenate(rows), ncols=per_class, channels=channels, ax=ax)
    ax.set_axis_on()
    ax.set_xticks([])
    ax.set_yticks([k * (h + 2) + h / 2 for k in range(len(classes))])
    ax.set_yticklabels(classes, fontsize=8)
    for s in ax.spines.values():
        s.set_visible(False)
    return ax


def outlines(image, labels, *, points=None, color="yellow", ax=None, title=None):
    """Show a field (2-D) with the outlines of its labelled cells and optional (x, y) points."""
    from skimage.segmentation import find_boundaries

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(_stretch(np.asarray(image, float)), cmap="gray", interpolation="nearest")
    edge = find_boundaries(np.asarray(labels), mode="inner")
    overlay = np.zeros((*edge.shape, 4))
    overlay[edge] = plt.matplotlib.colors.to_rgba(color)
    ax.imshow(overlay, interpolation="nearest")
    if points is not None:
        pts = np.asarray(points)
        ax.scatter(pts[:, 0], pts[:, 1], s=14, c="cyan", marker="+", linewidths=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def bar_counts(counts, *, ax=None, title=None, color="C0", log=False):
    """Horizontal bar chart of a Series of counts (index = category)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 0.25 * len(counts) + 1))
    ax.barh(counts.index.astype(str), counts.to_numpy(), color=color)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    return ax


def training_curves(history, *, ax=None, title=None):
    """Train and validation loss per epoch (and validation accuracy on a twin axis if present)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history["epoch"], history["train_loss"], "o-", label="train loss")
    ax.plot(history["epoch"], history["val_loss"], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    lines, labels = ax.get_legend_handles_labels()
    if "val_accuracy" in history and history["val_accuracy"].notna().any():
        twin = ax.twinx()
        twin.plot(history["epoch"], history["val_accuracy"], "^--", color="C2", label="validation accuracy")
        twin.set_ylabel("accuracy")
        twin.set_ylim(0, 1)
        l2, lab2 = twin.get_legend_handles_labels()
        lines, labels = lines + l2, labels + lab2
    ax.legend(lines, labels, fontsize=8, loc="center right")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def confusion(matrix, *, ax=None, title=None):
    """Row-normalised confusion matrix (DataFrame: rows true, columns predicted) as a heat map."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    counts = matrix.to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = counts / counts.sum(1, keepdims=True)
    frame = matrix.astype(float).copy()
    frame.iloc[:, :] = np.nan_to_num(frac)
    with warnings.catch_warnings():  # as in heatmap
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(frame, ax=ax, cmap="Blues", vmin=0, vmax=1, square=True, linewidths=0.3, linecolor="white",
                    cbar_kws={"shrink": 0.8, "label": "fraction of the true class"})
    ax.tick_params(labelsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def distributions(table, classes, *, ax=None, title=None, top=6):
    """Stacked bars of per-protein class distributions (rows of ``table``; columns ``classes``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.5 * len(table) + 1))
    data = table[list(classes)].to_numpy(float)
    order = np.argsort(-data.sum(0))[:top]
    left = np.zeros(len(table))
    labels = table["protein"].astype(str).tolist()
    for j, k in enumerate(order):
        ax.barh(labels, data[:, k], left=left, color=f"C{j}", label=classes[k])
        left += data[:, k]
    ax.barh(labels, 1 - left, left=left, color="lightgrey", label="other classes")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("mean predicted probability over the protein's cells")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def ap_bars(table, *, methods, standards, relative=False, ax=None, title=None):
    """Grouped bars of average precision per standard and method, with bootstrap intervals.

    Parameters
    ----------
    table : DataFrame
        Long table of :func:`protrep.evaluation.retrieval.evaluate` (``method``, ``standard``, ``ap``,
        ``ap_low``, ``ap_high``, ``prevalence``).
    methods, standards : sequence of str
        Bar order within a group, and group order.
    relative : bool
        Plot AP divided by the standard's prevalence (the AP of a random ranking) on a log
        axis, so that scales with few positive pairs are as readable as the others; the
        dashed line is then 1. Otherwise plot AP with the prevalence as a dashed line.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(methods)
    prev = table.groupby("standard")["prevalence"].first().reindex(standards)
    scale = prev.to_numpy() if relative else np.ones(len(standards))
    for k, m in enumerate(methods):
        rows = table[table["method"] == m].set_index("standard").reindex(standards)
        x = np.arange(len(standards)) + (k - len(methods) / 2 + 0.5) * width
        y = rows["ap"].to_numpy() / scale
        err = np.abs(np.stack([y - rows["ap_low"].to_numpy() / scale, rows["ap_high"].to_numpy() / scale - y]))
        ax.bar(x, y, width, yerr=err, capsize=2, label=m, color=f"C{k}")
    for i, v in enumerate(np.ones(len(standards)) if relative else prev):
        ax.hlines(v, i - 0.45, i + 0.45, colors="k", linestyles="dashed", linewidth=1)
    ax.set_xticks(range(len(standards)))
    ax.set_xticklabels(standards)
    if relative:
        ax.set_yscale("log")
        ax.set_ylabel("AP / share of positive pairs")
    else:
        ax.set_ylabel("average precision")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=4)
    return ax


def paired_differences(paired, *, standards=None, ax=None, title=None):
    """Forest plot of paired AP differences with their 95% intervals, one row per comparison and standard.

    Parameters
    ----------
    paired : DataFrame
        ``comparison``, ``standard``, ``diff``, ``low``, ``high``, ``verdict``
        (:func:`protrep.evaluation.paired.compare_seeds`).
    standards : sequence of str, optional
        Order of the standards (colours).

    A difference is read as "ahead" only where its whole interval lies right of 0
    (filled markers); open markers are intervals that include 0.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.35 * len(paired) + 1))
    standards = list(standards) if standards is not None else list(dict.fromkeys(paired["standard"]))
    comparisons = list(dict.fromkeys(paired["comparison"]))
    labels, positions, y = [], [], 0.0
    for c in comparisons:
        for k, s in enumerate(standards):
            row = paired[(paired["comparison"] == c) & (paired["standard"] == s)]
            if row.empty:
                continue
            r = row.iloc[0]
            separable = r["verdict"] != "not separable"
            ax.errorbar(r["diff"], -y, xerr=[[r["diff"] - r["low"]], [r["high"] - r["diff"]]], fmt="o", color=f"C{k}",
                        mfc=f"C{k}" if separable else "white", capsize=3,
                        label=s if c == comparisons[0] else None)
            labels.append(f"{c}: {s}")
            positions.append(-y)
            y += 1
        y += 0.5
    ax.axvline(0, color="k", linewidth=1, linestyle="dashed")
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("AP difference (paired 95% interval over proteins and seeds)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def setting_lines(table, *, published=None, ax=None, title=None):
    """Mean accuracy per background setting, one line per model, with error bars.

    Parameters
    ----------
    table : DataFrame
        Index models; columns ``(setting, "mean")`` with ``(setting, "err")`` (symmetric
        error, :func:`protrep.evaluation.confounding.table1`) or ``(setting, "low")`` and
        ``(setting, "high")`` (an interval, :func:`protrep.evaluation.protocols.bootstrap_table`).
    published : DataFrame, optional
        The same layout for published models, drawn dashed and grey-toned.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    settings = list(dict.fromkeys(table.columns.get_level_values(0)))
    x = np.arange(len(settings))
    for k, model in enumerate(table.index):
        row = table.loc[model]
        mean = np.array([row[(s, "mean")] for s in settings], float)
        if (settings[0], "low") in row.index:
            yerr = np.array([[m - row[(s, "low")], row[(s, "high")] - m] for s, m in zip(settings, mean)]).T
        else:
            yerr = [row[(s, "err")] for s in settings]
        ax.errorbar(x + 0.03 * (k - len(table) / 2), mean, yerr=yerr, marker="o", capsize=3, color=f"C{k}", label=model)
    if published is not None:
        for k, model in enumerate(published.index):
            row = published.loc[model]
            ax.plot(x, [row.get((s, "mean"), np.nan) for s in settings], ls="--", marker="x", lw=1,
                    color=plt.cm.Greys(0.45 + 0.2 * k), label=f"{model} (published)")
    ax.set_xticks(x)
    ax.set_xticklabels(settings)
    ax.set_xlabel("background setting")
    ax.set_ylabel("mean pairwise linear-SVM accuracy")
    ax.axhline(0.5, color="k", lw=0.5, ls=":")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def interval_forest(table, *, group=None, ax=None, title=None, xlabel=None, reference=0.0):
    """Estimates with intervals, one row each: ``table`` has ``mean, low, high`` (index: row labels).

    ``group`` (a column) colours the rows and offsets rows of the same label, e.g. the swap
    and the native test of one model side by side; a vertical line marks ``reference``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
    labels = list(dict.fromkeys(table.index))
    groups = list(dict.fromkeys(table[group])) if group else [None]
    for g_i, g in enumerate(groups):
        part = table if group is None else table[table[group] == g]
        y = np.array([labels.index(i) for i in part.index]) + (0.0 if group is None else 0.25 * (g_i - (len(groups) - 1) / 2))
        ax.errorbar(part["mean"], y, xerr=[part["mean"] - part["low"], part["high"] - part["mean"]], fmt="o",
                    capsize=3, color=f"C{g_i}", label=g)
    ax.axvline(reference, color="k", lw=0.8, ls=":")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    if group:
        ax.legend(fontsize=8)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def heatmap(table, *, ax=None, title=None, cmap="RdBu_r", center=0.0, fmt="{:.2f}", label=None):
    """A DataFrame as an annotated heat map (seaborn), colours symmetric around ``center``; NaN cells left blank."""
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * table.shape[1] + 2, 0.5 * table.shape[0] + 1.5))
    values = table.to_numpy(float)
    span = float(np.nanmax(np.abs(values - center))) if np.isfinite(values).any() else 1.0
    span = span or 1.0
    text = np.vectorize(lambda v: fmt.format(v) if np.isfinite(v) else "", otypes=[object])(values)
    with warnings.catch_warnings():  # seaborn 0.13 calls Colormap.set_bad, which matplotlib 3.11 plans to deprecate
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(table.astype(float), ax=ax, cmap=cmap, center=center, vmin=center - span, vmax=center + span,
                    annot=text, fmt="", annot_kws={"fontsize": 6.5}, linewidths=0.3, linecolor="white",
                    cbar_kws={"shrink": 0.8, "label": label})
    ax.set_xticklabels(ax.get_xticklabels(), rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0, fontsize=8)
    ax.set_xlabel("")
    ax.set_ylabel("")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def group_histogram(data, *, x, hue, ax=None, bins=30, clip=None, threshold=None, stat="density", title=None,
                    xlabel=None, order=None):
    """Distributions of ``x`` compared between groups ``hue``: step histograms (seaborn), each normalised alone.

    Parameters
    ----------
    data : DataFrame
        Long format: one row per observation, with columns ``x`` and ``hue``.
    x, hue : str
    bins : int or sequence of float
    clip : (low, high), optional
        Values outside are drawn in the first or last bin (a long tail does not squeeze
        the rest); the bins span ``clip``.
    threshold : float, optional
        A dashed vertical line (e.g. a decision threshold).
    stat : {"density", "count", "probability", "percent"}
        seaborn's ``stat``; with ``common_norm=False`` every group is normalised alone,
        so groups of different sizes compare.
    order : sequence, optional
        Order of the groups (colours and legend).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    frame = data[[x, hue]].dropna()
    if clip is not None:
        frame = frame.assign(**{x: frame[x].clip(*clip)})
        if np.ndim(bins) == 0:
            bins = np.linspace(clip[0], clip[1], int(bins) + 1)
    sns.histplot(frame, x=x, hue=hue, hue_order=order, bins=bins, stat=stat, common_norm=False, element="step",
                 fill=False, linewidth=1.5, ax=ax)
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def quality_curves(table, metric, *, x="minutes", chosen=None, live=None, ax=None, title=None):
    """One line per width: a quality measure against training time (or compute).

    Points are means over the seeds of a (width, budget); where there are several seeds,
    each is drawn faintly with a bar of one standard deviation, so that a reader sees which
    differences between widths exceed the seed-to-seed spread.

    Parameters
    ----------
    table : DataFrame
        Points of one model from a sweep (:func:`protrep.evaluation.quality.read_sweep`), with a
        ``minutes`` column (:func:`protrep.evaluation.quality.minutes_at_reference`).
    metric : str
        Column to plot (``test_accuracy``, ``probe_accuracy``, ``ap_compartments``, ...).
    x : str
        ``"minutes"`` (log scale) or ``"budget_tflop"``.
    chosen : (width, budget_tflop), optional
        The profile's setting, circled.
    live : (x, y), optional
        This book run's own point, drawn as a star.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for k, (width, group) in enumerate(table.groupby("width")):
        # one point per budget: the mean over seeds; where there are several, each seed faintly and a bar of one SD
        points = group.groupby("budget_tflop").agg(x=(x, "mean"), y=(metric, "mean"), sd=(metric, "std"),
                                                   n=(metric, "size")).reset_index()
        ax.plot(points["x"], points["y"], "o-", color=f"C{k}", ms=4, label=f"width {width:g}")
        several = points["n"] > 1
        if several.any():
            ax.errorbar(points["x"][several], points["y"][several], yerr=points["sd"][several], fmt="none",
                        ecolor=f"C{k}", capsize=3, lw=1)
            ax.plot(group[x], group[metric], ".", color=f"C{k}", alpha=0.35, ms=5)
        if chosen is not None and width == chosen[0]:
            hit = points[points["budget_tflop"] == chosen[1]]
            ax.plot(hit["x"], hit["y"], "o", ms=13, mfc="none", mec="k", mew=1.5,
                    label=f"default ({chosen[1]:g} TFLOP)")
    if live is not None:
        ax.plot(*live, "*", ms=13, color="k", label="this run")
    ax.set_xscale("log")
    ax.set_xlabel("training minutes at 100 GFLOP/s" if x == "minutes" else "training TFLOP")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return ax



#: One colour per competing method of chapter 7, fixed so panels and chapters agree.
METHOD_COLORS = {"deeploc": "#1f77b4", "pifia": "#9467bd", "pci": "#ff7f0e", "ae": "#2ca02c",
                 "cellprofiler": "#7f7f7f"}


def phase_diagram(table, standard, *, x="coupling", y="trait_strength", calibrated=None, ax=None, title=None):
    """Which method wins at each point of a two-knob grid, with its paired interval.

    Parameters
    ----------
    table : DataFrame
        :func:`protrep.sweep.grid_table` rows (knob columns, ``standard``, ``winner``,
        ``runner_up``, ``diff``, ``low``, ``high``, ``verdict``), restricted by the caller to
        the points of the two-knob grid.
    standard : str
    x, y : str
        Knob columns on the axes.
    calibrated : float, optional
        Calibrated value of ``x``, drawn as a dashed line.

    Notes
    -----
    Each cell is coloured by the winner (:data:`METHOD_COLORS`), solid where its paired 95%
    interval against the runner-up excludes 0 and hatched where it does not; the text gives
    the winner, the runner-up and the difference with its interval.
    """
    from matplotlib.patches import Rectangle

    ax = ax or plt.gca()
    t = table[table["standard"] == standard]
    xs, ys = sorted(t[x].unique()), sorted(t[y].unique())
    for _, r in t.iterrows():
        i, j = xs.index(r[x]), ys.index(r[y])
        separable = r["verdict"] == "ahead"
        color = METHOD_COLORS.get(r["winner"], "white")
        ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, facecolor=color, alpha=0.85 if separable else 0.3,
                               hatch=None if separable else "//", edgecolor="white", linewidth=2))
        text = (f"{r['winner']}\nover {r['runner_up']}\n{r['diff']:+.3f}\n[{r['low']:+.3f}, {r['high']:+.3f}]"
                if r["winner"] is not None else "no pairs")
        ax.text(i, j, text, ha="center", va="center", fontsize=7, color="black")
    if calibrated is not None and len(xs) > 1:
        pos = np.interp(calibrated, xs, np.arange(len(xs)))
        ax.axvline(pos, color="crimson", linestyle="--", linewidth=1.5, label=f"calibrated {x} {calibrated:.2f}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=7, frameon=False)
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(-0.5, len(ys) - 0.5)
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title or standard, fontsize=10)
    return ax
