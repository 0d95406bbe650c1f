"""The paper's embedding maps ("dimensionality reduction revealed that the embeddings captured biophysical
properties of the amino acids"), each with a number: t-SNE in 2-D, and the silhouette of the colouring classes
in that map (−1…1; above 0 where the classes form their own regions).

(a) the 20 amino acids: their mean contextual embedding over the residues of a set (and, for an in-process
backbone, their input-token embedding), coloured by hydrophobicity, charge and size; (b) residues coloured by
their DSSP 3-state; (c) proteins coloured by location and by membrane-bound vs soluble.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402

from models import vocabulary  # noqa: E402
from models.probes.datasets import LocalizationRecord, StructureRecord  # noqa: E402
from models.probes.report import save_figure  # noqa: E402

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# Standard classes: Kyte–Doolittle hydropathy, side-chain charge at pH 7, side-chain volume.
PROPERTIES = {
    "hydrophobicity": {**dict.fromkeys("IVLFCMA", "hydrophobic"), **dict.fromkeys("GTSWYP", "neutral"),
                       **dict.fromkeys("HEQDNKR", "hydrophilic")},
    "charge": {**dict.fromkeys("KRH", "positive"), **dict.fromkeys("DE", "negative"),
               **dict.fromkeys("ACFGILMNPQSTVWY", "neutral")},
    "size": {**dict.fromkeys("GAS", "tiny"), **dict.fromkeys("CDNPTV", "small"),
             **dict.fromkeys("EQHILKMRFWY", "large")},
}
MAX_POINTS = 2000  # residues or proteins per map: t-SNE's cost grows with the square


def _tsne(points: np.ndarray, seed: int) -> np.ndarray:
    perplexity = max(2.0, min(30.0, (len(points) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(np.asarray(points, np.float64))


def _silhouette(coordinates: np.ndarray, labels: Sequence[str]) -> float:
    labels = np.asarray(labels)
    if not 1 < len(set(labels)) < len(labels):
        return float("nan")
    return float(silhouette_score(coordinates, labels))


def _scatter(ax, coordinates: np.ndarray, labels: Sequence[str], title: str, names: Sequence[str] | None = None):
    labels = np.asarray(labels)
    for label in sorted(set(labels)):
        chosen = labels == label
        ax.scatter(coordinates[chosen, 0], coordinates[chosen, 1], s=40 if names is not None else 4, label=label)
    if names is not None:
        for (x, y), name in zip(coordinates, names):
            ax.annotate(name, (x, y), fontsize=9, ha="center", va="center")
    ax.set_title(title, fontsize=9), ax.legend(fontsize=7, markerscale=1 if names is not None else 3)
    ax.set_xticks([]), ax.set_yticks([])


def amino_acid_means(residue_embeddings: Sequence[np.ndarray], sequences: Sequence[str]) -> dict[str, np.ndarray]:
    """Each amino acid's mean embedding over its occurrences (amino acids that never occur are left out)."""
    dim = residue_embeddings[0].shape[1]
    sums, counts = np.zeros((len(AMINO_ACIDS), dim)), np.zeros(len(AMINO_ACIDS))
    index = {residue: i for i, residue in enumerate(AMINO_ACIDS)}
    for embedded, sequence in zip(residue_embeddings, sequences):
        rows = [(i, index[r]) for i, r in enumerate(sequence.upper()) if r in index]
        for position, amino_acid in rows:
            sums[amino_acid] += embedded[position]
            counts[amino_acid] += 1
    return {residue: sums[i] / counts[i] for i, residue in enumerate(AMINO_ACIDS) if counts[i]}


def input_token_embeddings(embedder) -> dict[str, np.ndarray] | None:
    """The 20 amino acids' rows of an in-process backbone's token embedding (None for other embedders)."""
    backbone = getattr(embedder, "backbone", None)
    table = getattr(getattr(backbone, "token_embedding", None), "embeddings", None)
    if table is None:
        return None
    return {residue: np.asarray(table)[vocabulary.TOKEN_IDS[residue]] for residue in AMINO_ACIDS}


def draw_maps(embedder, residue_embeddings: Sequence[np.ndarray], structures: Sequence[StructureRecord],
              protein_embeddings: np.ndarray | None, proteins: Sequence[LocalizationRecord], output_dir: str,
              prefix: str = "", seed: int = 0) -> tuple[dict, list[str]]:
    """Write the maps as PNGs into `output_dir`; returns ``{map: {colouring: silhouette}}`` and the files."""
    scores: dict[str, dict[str, float]] = {}
    written = []
    rng = np.random.default_rng(seed)
    if structures:
        tables = {"contextual (mean over residues)": amino_acid_means(residue_embeddings,
                                                                        [r.sequence for r in structures])}
        tokens = input_token_embeddings(embedder)
        if tokens is not None:
            tables["input token"] = tokens
        figure, axes = plt.subplots(len(tables), len(PROPERTIES), figsize=(15, 4.8 * len(tables)), squeeze=False)
        for row, (kind, table) in enumerate(tables.items()):
            names = sorted(table)
            coordinates = _tsne(np.stack([table[name] for name in names]), seed)
            key = "amino_acids_" + kind.split()[0]
            scores[key] = {}
            for column, (prop, classes) in enumerate(PROPERTIES.items()):
                labels = [classes[a] for a in names]
                scores[key][prop] = _silhouette(coordinates, labels)
                _scatter(axes[row, column], coordinates, labels,
                         f"{kind}: {prop} (silhouette {scores[key][prop]:+.2f})", names=names)
        written.append(save_figure(figure, output_dir, f"{prefix}map_amino_acids.png"))

        # residues, a uniform sample over all residues of the set
        where = [(p, i) for p, record in enumerate(structures) for i in range(len(record.sequence))]
        chosen = [where[k] for k in sorted(rng.choice(len(where), min(MAX_POINTS, len(where)), replace=False))]
        points = np.stack([residue_embeddings[p][i] for p, i in chosen])
        states = [structures[p].dssp3[i] for p, i in chosen]
        coordinates = _tsne(points, seed)
        scores["residues"] = {"dssp3": _silhouette(coordinates, states)}
        figure, ax = plt.subplots(figsize=(6.5, 5.5))
        _scatter(ax, coordinates, states, f"residues by DSSP 3-state (silhouette {scores['residues']['dssp3']:+.2f})")
        written.append(save_figure(figure, output_dir, f"{prefix}map_residues.png"))
    if proteins and protein_embeddings is not None:
        chosen = sorted(rng.choice(len(proteins), min(MAX_POINTS, len(proteins)), replace=False))
        coordinates = _tsne(protein_embeddings[chosen], seed)
        location = [proteins[i].location for i in chosen]
        membrane = [proteins[i].membrane for i in chosen]
        scores["proteins"] = {"location": _silhouette(coordinates, location),
                              "membrane": _silhouette(coordinates, membrane)}
        figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
        _scatter(axes[0], coordinates, location, f"proteins by location (silhouette {scores['proteins']['location']:+.2f})")
        _scatter(axes[1], coordinates, membrane,
                 f"proteins, membrane (M) vs soluble (S) (silhouette {scores['proteins']['membrane']:+.2f})")
        written.append(save_figure(figure, output_dir, f"{prefix}map_proteins.png"))
    return scores, written
