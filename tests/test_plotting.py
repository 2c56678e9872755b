import matplotlib

matplotlib.use("Agg")  # tests only; the notebooks keep the inline backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from protrep import plotting  # noqa: E402


def test_plot_functions_draw_on_the_given_axes():
    rng = np.random.default_rng(0)
    images = rng.random((12, 2, 16, 16))
    fig, axes = plt.subplots(2, 4)
    assert plotting.montage(images, ncols=4, titles=list("abcdefghijkl"), ax=axes[0, 0]) is axes[0, 0]
    assert plotting.class_montage(images, np.arange(12) % 3, ["a", "b", "c"], per_class=2, ax=axes[0, 1]) is axes[0, 1]
    labels = np.zeros((16, 16), int)
    labels[4:8, 4:8] = 1
    assert plotting.outlines(images[0, 0], labels, points=[[5, 5]], ax=axes[0, 2]) is axes[0, 2]
    assert plotting.bar_counts(pd.Series([3, 1], index=["x", "y"]), ax=axes[0, 3]) is axes[0, 3]
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "val_accuracy": [0.3, 0.6]})
    assert plotting.training_curves(history, ax=axes[1, 0]) is axes[1, 0]
    cm = pd.DataFrame([[3, 1], [0, 2]], index=["a", "b"], columns=["a", "b"])
    assert plotting.confusion(cm, ax=axes[1, 1]) is axes[1, 1]
    dist = pd.DataFrame({"protein": ["P1", "P2"], "a": [0.7, 0.2], "b": [0.3, 0.8]})
    assert plotting.distributions(dist, ["a", "b"], ax=axes[1, 2]) is axes[1, 2]
    plt.close(fig)


def test_composite_colours_gfp_green_and_rfp_magenta():
    crop = np.zeros((2, 4, 4))
    crop[0, 0, 0] = 1  # GFP only
    crop[1, 3, 3] = 1  # RFP only
    rgb = plotting.composite(crop)
    assert rgb.shape == (4, 4, 3)
    assert rgb[0, 0, 1] == 1 and rgb[0, 0, 0] == 0
    assert rgb[3, 3, 0] > 0 and rgb[3, 3, 2] > 0 and rgb[3, 3, 1] == 0


def test_ap_bars_absolute_and_relative():
    table = pd.DataFrame({"method": ["a", "a", "b", "b"], "standard": ["s", "t", "s", "t"],
                          "ap": [0.5, 0.1, 0.3, 0.05], "ap_low": [0.4, 0.08, 0.2, 0.04],
                          "ap_high": [0.6, 0.12, 0.35, 0.06], "prevalence": [0.2, 0.02, 0.2, 0.02]})
    fig, axes = plt.subplots(1, 2)
    plotting.ap_bars(table, methods=["a", "b"], standards=["s", "t"], ax=axes[0])
    plotting.ap_bars(table, methods=["a", "b"], standards=["s", "t"], relative=True, ax=axes[1])
    heights = sorted(round(p.get_height(), 6) for p in axes[1].patches)
    assert heights == [1.5, 2.5, 2.5, 5.0] and axes[1].get_yscale() == "log"
    plt.close(fig)


def test_setting_lines_and_heatmap():
    cols = pd.MultiIndex.from_product([["base", "diff"], ["mean", "err"]])
    table = pd.DataFrame([[0.9, 0.01, 0.7, 0.02], [0.8, 0.02, 0.75, 0.01]], index=["m1", "m2"], columns=cols)
    fig, axes = plt.subplots(1, 2)
    assert plotting.setting_lines(table, published=table.iloc[:1], ax=axes[0]) is axes[0]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["base", "diff"]
    assert len(axes[0].get_legend().get_texts()) == 3
    gap = pd.DataFrame([[0.2, -0.1], [0.0, np.nan]], index=["m1", "m2"], columns=["a", "b"])
    assert plotting.heatmap(gap, ax=axes[1]) is axes[1]
    mesh = axes[1].collections[0]
    assert mesh.get_clim() == (-0.2, 0.2)  # symmetric around 0
    assert sorted(t.get_text() for t in axes[1].texts if t.get_text()) == ["-0.10", "0.00", "0.20"]  # NaN blank
    plt.close(fig)


def test_group_histogram_normalises_each_group_and_clips_the_tail():
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"kl": np.concatenate([rng.exponential(0.05, 400), rng.exponential(0.5, 40), [50.0]]),
                         "model": ["a"] * 400 + ["b"] * 41})
    fig, ax = plt.subplots()
    assert plotting.group_histogram(data, x="kl", hue="model", clip=(0, 1), bins=20, threshold=0.1, ax=ax) is ax
    assert ax.get_xlim()[1] < 2  # the outlier at 50 is drawn in the last bin, not stretching the axis
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    # density per group: each group's step line (bin edges, heights) encloses an area of 1 whatever its size
    steps = [line for line in ax.lines if line.get_drawstyle() == "steps-post"]  # not the threshold line
    assert len(steps) == 2
    for line in steps:
        xy = line.get_xydata()
        assert np.isclose((np.diff(xy[:, 0]) * xy[:-1, 1]).sum(), 1.0, rtol=0.05)
    plt.close(fig)


def test_set_theme_is_the_book_theme():
    import matplotlib as mpl

    mpl.rcParams["axes.grid"] = False
    plotting.set_theme()
    assert mpl.rcParams["axes.grid"] and not mpl.rcParams["axes.spines.top"]
    cycle = [mpl.colors.to_hex(c) for c in mpl.rcParams["axes.prop_cycle"].by_key()["color"][:3]]
    assert cycle == sns.color_palette("colorblind").as_hex()[:3]


def test_quality_curves_average_seeds_and_mark_the_chosen_point():
    table = pd.DataFrame({"width": [0.25] * 4 + [0.5] * 2, "budget_tflop": [1, 2, 2, 2, 1, 2],
                          "minutes": [1.0, 2.0, 2.2, 1.8, 1.5, 3.0], "test_accuracy": [0.7, 0.8, 0.9, 0.85, 0.6, 0.7]})
    fig, ax = plt.subplots()
    assert plotting.quality_curves(table, "test_accuracy", chosen=(0.25, 2), live=(2.0, 0.86), ax=ax) is ax
    lines = {line.get_label(): line for line in ax.get_lines()}
    mean = lines["width 0.25"]
    assert np.allclose(mean.get_xdata(), [1.0, 2.0]) and np.allclose(mean.get_ydata(), [0.7, 0.85])
    assert np.allclose(lines["default (2 TFLOP)"].get_ydata(), [0.85])
    assert "this run" in lines and len(ax.collections) == 1  # one error bar set: only width 0.25 has seeds
    plt.close(fig)
