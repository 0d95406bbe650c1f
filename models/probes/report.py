"""The probe report: ``metrics.json`` and PNG plots a person can look at."""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.probes.datasets import LOCATIONS  # noqa: E402


def write_metrics(metrics: dict, output_dir: str) -> str:
    """``metrics.json``: the keys of docs/contracts.md (ss.<set>.q3/q8/n_residues, localization.<set>.q10/q2/n_proteins,
    embedder) plus intervals, confusion matrices and per-class metrics; private arrays are left out."""
    def public(value):
        if isinstance(value, dict):
            return {k: public(v) for k, v in value.items() if not k.startswith("_")}
        return value

    path = os.path.join(output_dir, "metrics.json")
    with open(path, "w") as handle:
        json.dump(public(metrics), handle, indent=2)
    return path


def _confusion(ax, report: dict, title: str) -> None:
    matrix = np.array(report["confusion_matrix"], float)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(report["labels"])), report["labels"], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(report["labels"])), report["labels"], fontsize=7)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(f"{title}: accuracy {report['accuracy']:.3f}")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, int(value), ha="center", va="center", fontsize=6, color="white" if rows[i, j] > 0.5 else "black")
    plt.colorbar(image, ax=ax, fraction=0.046)


def _bars(ax, report: dict, title: str) -> None:
    labels = report["labels"]
    x = np.arange(len(labels))
    for offset, key in ((-0.25, "precision"), (0.0, "recall"), (0.25, "mcc")):
        ax.bar(x + offset, [report["per_class"][label][key] for label in labels], width=0.25, label=key)
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(-0.2, 1.0), ax.legend(fontsize=7), ax.set_title(title)


def write_plots(metrics: dict, locations_by_set: dict, output_dir: str) -> list[str]:
    """Confusion matrices (Q8, Q10), per-class bars, and a PCA of per-protein embeddings by location."""
    written = []
    embedder = metrics.get("embedder", "")
    for set_name, result in metrics.get("ss", {}).items():
        figure, axes = plt.subplots(1, 2, figsize=(13, 5))
        _confusion(axes[0], result["ss8"], f"Q8 {set_name}")
        _bars(axes[1], result["ss8"], f"8-state per class, {set_name}")
        figure.suptitle(f"secondary structure — {embedder}")
        written.append(save_figure(figure, output_dir, f"ss_{set_name}.png"))
    for set_name, result in metrics.get("localization", {}).items():
        figure, axes = plt.subplots(1, 3, figsize=(19, 5.5))
        _confusion(axes[0], result["location"], f"Q10 {set_name}")
        _bars(axes[1], result["location"], f"location per class, {set_name}")
        _projection(axes[2], result["_protein_embeddings"], locations_by_set[set_name])
        figure.suptitle(f"localization — {embedder}")
        written.append(save_figure(figure, output_dir, f"localization_{set_name}.png"))
    return written


def _projection(ax, embeddings: np.ndarray, locations: list[str]) -> None:
    centred = embeddings - embeddings.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    for location in LOCATIONS:
        chosen = np.array([name == location for name in locations])
        if chosen.any():
            ax.scatter(points[chosen, 0], points[chosen, 1], s=4, label=location)
    ax.set_title("per-protein embeddings, PCA"), ax.legend(fontsize=6, markerscale=3)


def save_figure(figure, output_dir: str, name: str) -> str:
    path = os.path.join(output_dir, name)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
