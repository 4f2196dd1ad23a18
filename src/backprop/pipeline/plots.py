"""Figures people would rather look at than read, as PNG bytes.

matplotlib runs on its Agg backend (no display needed) and the figures carry
no timestamp, so the same numbers give the same bytes: DVC's hashes of them
stay put from one identical run to the next.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    # zlib level 1: files a third larger than at the default 6, written in half the time.
    with warnings.catch_warnings():
        # Class names in scripts the bundled font lacks are drawn as boxes; a warning per
        # character of each label would bury the run's own output.
        warnings.filterwarnings("ignore", r"Glyph \d+ .*missing from", UserWarning)
        fig.savefig(
            buffer, format="png", dpi=100, metadata={"Software": None},
            pil_kwargs={"compress_level": 1},
        )  # fmt: skip
    plt.close(fig)
    return buffer.getvalue()


def _margins(fig, left: float, right: float, bottom: float, top: float, **space: float) -> None:
    """Fixed margins in inches: ``tight_layout`` measures every text of the figure once more,
    which costs a third to a half of a figure's time, in every sweep job."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        **space,
    )


def training_curves(
    epochs: list[int], train_loss: list[float], val_loss: list[float | None],
    val_accuracy: list[float | None], best_epoch: int | None = None, title: str | None = None,
) -> bytes:  # fmt: skip
    """Loss (train and validation) and validation accuracy against the epoch.

    ``title`` says which run it is (its settings).  The accuracy axis spans the epochs
    after the first fifth, where runs differ, rather than the climb from chance that
    would squeeze them into its top tenth; the kept epoch's accuracy is written on it.
    """
    plt = _pyplot()
    from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, train_loss, label="train")
    if any(v is not None for v in val_loss):
        ax_loss.plot(epochs, val_loss, label="validation")
        ax_acc.plot(epochs, val_accuracy, color="tab:green")
    if best_epoch is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(
                best_epoch,
                color="grey",
                linestyle=":",
                label=f"kept: epoch {best_epoch} (lowest validation loss)",
            )
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    # Labelled ticks at 1-2-5 steps and no minor ticks: a log axis's dozens of minor
    # ticks cost a fifth of the figure's time.
    ax_loss.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax_loss.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax_loss.yaxis.set_minor_locator(NullLocator())
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.legend()
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    accuracies = [a for a in val_accuracy if a is not None]
    if accuracies:
        later = accuracies[len(accuracies) // 5 :]
        low, high = min(later), max(later)
        pad = max((high - low) * 0.15, 0.005)
        ax_acc.set_ylim(max(low - pad, 0.0), min(high + pad, 1.0))
        if low > min(accuracies):
            ax_acc.set_title("Validation accuracy (first epochs below the axis)")
        if best_epoch is not None and val_accuracy[best_epoch - 1] is not None:
            kept = val_accuracy[best_epoch - 1]
            ax_acc.plot([best_epoch], [kept], "o", color="tab:green")
            ax_acc.annotate(f"{kept:.4f}", (best_epoch, kept), xytext=(4, 4),
                            textcoords="offset points", fontsize=8)  # fmt: skip
    top = 0.35
    if title:
        fig.suptitle(title, fontsize=10)
        top = 0.65
    _margins(fig, left=0.8, right=0.2, bottom=0.5, top=top, wspace=0.25)
    return _png(fig)


def confusion(cm: np.ndarray, classes: list) -> bytes:
    """The confusion matrix with its counts; rows are true classes."""
    plt = _pyplot()
    k = len(classes)
    size = min(3 + 0.4 * k, 14)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues", interpolation="nearest")
    labels = [str(c) for c in classes]
    ax.set_xticks(range(k), labels, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), labels)
    if k <= 30:  # the counts; an empty cell is 0 (a hundred zeros cost a tenth of a second)
        limit = cm.max() / 2 if cm.size else 0
        for i, j in zip(*np.nonzero(cm)):
            color = "white" if cm[i, j] > limit else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color, fontsize=8)
    accuracy = np.trace(cm) / max(cm.sum(), 1)
    ax.set(
        xlabel="predicted", ylabel="true", title=f"Test confusion matrix (accuracy {accuracy:.3f})"
    )
    room = 0.3 + 0.09 * max(len(label) for label in labels)  # tick labels' width
    _margins(fig, left=0.4 + room, right=0.2, bottom=0.4 + (room if k > 12 else 0.2), top=0.4)
    return _png(fig)


def image_side(n_features: int) -> int | None:
    """The side of a square image of n_features pixels (at least 4 x 4), or None."""
    side = math.isqrt(n_features)
    return side if side * side == n_features and side >= 4 else None


def _mosaic(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    """Square images (n, side, side) tiled into one array, NaN between them.

    One imshow of a mosaic draws in milliseconds; a grid of 64 subplots takes a second.
    """
    n, side, _ = images.shape
    rows = math.ceil(n / cols)
    cell = side + pad
    out = np.full((rows * cell - pad, cols * cell - pad), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        out[r * cell : r * cell + side, c * cell : c * cell + side] = image
    return out


def weight_scale(W: np.ndarray) -> float:
    """The colour scale's half-width for first-layer weights: the 99.5th percentile of |w|,
    shared by every unit and centred on 0 (white), so that colours compare across units and
    a few large weights do not wash the others out."""
    bound = float(np.percentile(np.abs(W), 99.5)) if W.size else 0.0
    return bound if bound > 0 else 1.0


SMALL_IMAGE = 16  # below this side, a unit's weights show no strokes, only blotches


def first_layer_weights(W: np.ndarray, max_units: int = 64) -> bytes:
    """Each first-layer unit's incoming weights (n_features,) drawn as a square image, all
    on one colour scale centred on 0, with its colour bar."""
    plt = _pyplot()
    side = image_side(W.shape[0])
    units = min(W.shape[1], max_units)
    cols = math.ceil(math.sqrt(units))
    weights = W[:, :units].T.reshape(units, side, side)
    bound = weight_scale(weights)
    fig, ax = plt.subplots(figsize=(7.2, 5.6 * math.ceil(units / cols) / cols + 0.9))
    shown = ax.imshow(_mosaic(weights, cols), cmap="RdBu_r", vmin=-bound, vmax=bound,
                      interpolation="nearest")  # fmt: skip
    ax.axis("off")
    title = f"First-layer weights of {units} of {W.shape[1]} units, {side} x {side} inputs"
    if side < SMALL_IMAGE:
        title += (f"\n{side} x {side} pixels are too few to show strokes: "
                  "each unit is a blotch of a few pixels")  # fmt: skip
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02, extend="both")
    bar.set_label("weight (red +, blue -; 99.5% of |w| within the scale)")
    return _png(fig)


def misclassified_labels(
    y_true: np.ndarray, y_pred: np.ndarray, probability: np.ndarray, classes: list
) -> list[str]:
    """``7 -> 1 (0.62)``: the true class, the predicted one and its predicted probability."""
    return [f"{classes[t]} -> {classes[p]} ({q:.2f})"
            for t, p, q in zip(y_true, y_pred, probability)]  # fmt: skip


def misclassified(
    X: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, classes: list, max_images: int = 36,
    probability: np.ndarray | None = None,
) -> bytes:  # fmt: skip
    """A grid of wrongly classified examples, labelled ``true -> predicted (probability)``,
    the most confidently wrong first when the probabilities are given."""
    plt = _pyplot()
    side = image_side(X.shape[1])
    wrong = np.flatnonzero(y_true != y_pred)
    if probability is not None:
        wrong = wrong[np.argsort(-probability[wrong], kind="stable")]
    wrong = wrong[:max_images]
    total = int((y_true != y_pred).sum())
    cols = 6
    rows = max(1, math.ceil(len(wrong) / cols))
    fig, ax = plt.subplots(figsize=(cols * 1.35, rows * 1.45 + 0.7))
    ax.axis("off")
    how = (
        ", most confident first: true -> predicted (its probability)"
        if probability is not None
        else ": true -> predicted"
    )
    fig.suptitle(f"Misclassified test examples ({len(wrong)} of {total}){how}", fontsize=10)
    if len(wrong):
        pad = max(2, side // 2)  # room for the labels below each image
        images = X[wrong].reshape(-1, side, side)
        mosaic = _mosaic(images, cols, pad)
        mosaic = np.vstack([mosaic, np.full((pad, mosaic.shape[1]), np.nan)])
        ax.imshow(mosaic, cmap="gray_r", interpolation="nearest")
        if probability is not None:
            labels = misclassified_labels(y_true[wrong], y_pred[wrong], probability[wrong], classes)
        else:
            labels = [f"{classes[y_true[i]]} -> {classes[y_pred[i]]}" for i in wrong]
        for k, label in enumerate(labels):
            r, c = divmod(k, cols)
            ax.text(c * (side + pad) + side / 2, r * (side + pad) + side - 0.3, label,
                    ha="center", va="top", fontsize=7)  # fmt: skip
    else:
        ax.text(0.5, 0.5, f"every one of the {len(y_true)} test examples is classified right",
                ha="center", va="center", fontsize=10, transform=ax.transAxes)  # fmt: skip
    _margins(fig, left=0.1, right=0.1, bottom=0.1, top=0.45)
    return _png(fig)


def sweep_summary(
    params: list[dict[str, str]], scores: list[float], swept: list[str], best_index: int,
    names: list[str] | None = None, jobs: int | None = None,
) -> bytes:  # fmt: skip
    """Validation accuracy of each job against each swept parameter, one panel per parameter.

    Each point is labelled with its job (jobs on the same spot share one label), the best
    one is ringed in red, and no legend covers a point.  A numeric parameter whose values
    span more than 10x is drawn on a log axis; any other on a linear or category axis.
    """
    plt = _pyplot()
    names = names or [str(i) for i in range(len(scores))]
    keys = swept or ["job"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.8 * len(keys), 4.4), squeeze=False)
    labelled = len(scores) <= 12  # past that, labels would cover each other: the best only
    for ax, key in zip(axes[0], keys):
        values = [p.get(key) if swept else names[i] for i, p in enumerate(params)]
        xs, ticks = _positions(values)
        ax.scatter(xs, scores, zorder=2)
        ax.scatter([xs[best_index]], [scores[best_index]], s=220, facecolors="none",
                   edgecolors="tab:red", linewidths=2, zorder=3)  # fmt: skip
        spots: dict[tuple[float, float], list[str]] = {}
        for i, (x, y) in enumerate(zip(xs, scores)):
            if labelled or i == best_index:
                spots.setdefault((x, y), []).append(names[i])
        _label_spots(ax, spots, scores)
        if ticks is not None:
            ax.set_xticks(range(len(ticks)), ticks, rotation=30 if len(ticks) > 3 else 0)
            ax.set_xlim(-0.5, len(ticks) - 0.5)
        else:
            if min(xs) > 0 and max(xs) / min(xs) > 10:
                ax.set_xscale("log")
            distinct = sorted(set(xs))
            if len(distinct) <= 8:  # ticks at the values swept (0.30000000000000004: 0.3)
                from matplotlib.ticker import NullLocator

                ax.set_xticks(distinct, [f"{x:.4g}" for x in distinct],
                              rotation=45 if len(distinct) > 4 else 0)  # fmt: skip
                ax.xaxis.set_minor_locator(NullLocator())
        ax.margins(x=0.15, y=0.15)
        ax.grid(alpha=0.3)
        ax.set(xlabel=key, ylabel="validation accuracy (weights kept)")
    jobs = jobs or len(scores)
    shown = f"{len(scores)} jobs" if jobs == len(scores) else f"{len(scores)} scored jobs of {jobs}"
    fig.suptitle(f"Sweep of {shown}: best is job {names[best_index]} "
                 f"(ringed, {scores[best_index]:.4f})")  # fmt: skip
    fig.tight_layout()
    return _png(fig)


def _label_spots(ax, spots: dict[tuple[float, float], list[str]], scores: list[float]) -> None:
    """Label each spot with its jobs, right of the point; a label that would touch the one
    below it on the same side goes to the left instead."""
    close = (max(scores) - min(scores)) * 0.04 or 0.01
    last: dict[tuple[float, int], float] = {}  # (x, side) -> y of the last label there
    for (x, y), jobs in sorted(spots.items()):
        side = 1
        if abs(y - last.get((x, 1), -math.inf)) < close:
            side = -1
        last[(x, side)] = y
        ax.annotate("job " + ", ".join(jobs), (x, y), xytext=(7 * side, 4),
                    textcoords="offset points", fontsize=8,
                    ha="left" if side > 0 else "right", va="bottom")  # fmt: skip


def _positions(values: list) -> tuple[list[float], list[str] | None]:
    """x of each value: the number itself, or (for values that are not all numbers, or
    a single one) the index of the value among the distinct ones, with those as ticks."""
    try:
        xs = [float(v) for v in values]
        if len(set(xs)) > 1:
            return xs, None
    except (TypeError, ValueError):
        pass
    ticks = [str(v) for v in dict.fromkeys(values)]
    return [float(ticks.index(str(v))) for v in values], ticks
