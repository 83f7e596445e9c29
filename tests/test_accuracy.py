"""Accuracy of cmot's defaults on the paper's real-data tasks (skipped without the shared data).

cmot with default parameters must beat the naive kNN baseline of the issue
(mean X of the 30 nearest training cells in a 30-component SVD of Y) on both
cell-wise and feature-wise Pearson, and reach the paper's numbers where the
protocol allows.  The full tables (more seeds, paper parameters, time, memory)
come from benchmarks/accuracy.py; see benchmarks/results/.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _data  # noqa: E402

from cmot import CMOT  # noqa: E402
from cmot._utils import to_dense  # noqa: E402
from cmot.metrics import cellwise_pearson, featurewise_auroc, featurewise_pearson  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _data.available(), reason=f"shared data folder {_data.data_dir()} absent (set CMOT_DATA)"),
]


def _scores(truth, pred):
    cell = cellwise_pearson(truth, pred)
    return float(np.nanmean(cell)), float(np.nanmedian(cell)), float(np.nanmean(featurewise_pearson(truth, pred)))


def _run(name, seed=0):
    task = _data.load(name, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CMOT(random_state=seed).fit(task.train_x, task.train_y, labels=task.labels_for_ot)
        pred = np.asarray(model.predict(task.test_y))
    naive = _data.naive_knn(task.train_x, task.train_y, task.test_y)
    truth = to_dense(task.test_x)
    return task, model, pred, naive, truth


@pytest.mark.parametrize(
    "name,seeds,min_cell_mean",
    [
        # 42 test cells: one split varies by +-0.015, so pancancer averages three splits
        ("pancancer_rna_from_atac", (0, 1, 2), 0.67),  # paper 0.67
        ("a549_rna_from_atac", (0,), 0.52),  # paper 0.52
        # the target (reference code 0.541), on the cell filter under which its
        # training-mean baseline (0.542) is reproduced
        ("a549_top_total_rna", (0,), 0.54),
        ("pbmc10k_protein_from_rna", (0,), 0.90),  # paper: median 0.86
        # another donor: the batch offset must neither cost accuracy nor be reported as poor mapping
        ("pbmc10k_to_pbmc5k", (0,), 0.90),
    ],
)
def test_defaults_beat_naive_knn(name, seeds, min_cell_mean):
    ours, naive_s, flagged = [], [], []
    for seed in seeds:
        _, model, pred, naive, truth = _run(name, seed)
        ours.append(_scores(truth, pred))
        naive_s.append(_scores(truth, naive))
        flagged.append(model.outliers_.mean())
    ours, naive_s = np.mean(ours, axis=0), np.mean(naive_s, axis=0)
    print(f"{name}: cmot cell {ours[0]:.3f}/{ours[1]:.3f} feat {ours[2]:.3f}; naive {np.round(naive_s, 3)}")
    assert ours[0] >= min_cell_mean
    assert ours[0] > naive_s[0]  # mean cell-wise
    assert ours[2] > naive_s[2]  # mean feature-wise
    # hardly any test cell of a type seen in training is reported as poorly mapped
    assert np.mean(flagged) <= 0.03  # pancancer: 1 of 126 test cells over three splits


def test_a549_falls_back_to_the_training_mean_where_atac_says_little():
    # sci-CAR ATAC barely predicts RNA (feature-wise r ~0.03 for every method): leave-one-out
    # on the source pulls predictions toward the mean and the smooth linear map, so cmot is
    # not worse than the mean cell-wise (split seed 0: linear weight 0.6 / 0.6, shrinkage
    # 0.5 / 0.25; the neighbours' average keeps at most 0.3 of the weight: 0.25 before
    # cmot 0.9, whose neighbour metric re-chooses the linear weight, 0.7 -> 0.6 on the second)
    for name in ("a549_rna_from_atac", "a549_top_total_rna"):
        task, model, pred, _, truth = _run(name)
        mean = _data.training_mean(task.train_x, truth.shape[0])
        assert model.shrinkage_ >= 0.25 and model.linear_weight_ >= 0.5
        assert (1 - model.shrinkage_) * (1 - model.linear_weight_) <= 0.3 + 1e-12
        assert _scores(truth, pred)[0] >= _scores(truth, mean)[0]
    for name in ("pancancer_rna_from_atac", "pbmc10k_protein_from_rna"):  # informative Y: no shrinkage
        assert _run(name)[1].shrinkage_ == 0.0


def test_pbmc_median_cellwise_reaches_the_paper():
    _, _, pred, _, truth = _run("pbmc10k_protein_from_rna")
    assert _scores(truth, pred)[1] >= 0.86


def test_pancancer_atac_from_rna_peakwise_auroc_beats_naive():
    task, _, pred, naive, truth = _run("pancancer_atac_from_rna")
    # paper protocol: peak-wise AUROC of the inferred values against the binarized measured peaks
    # (rank-based, so the paper's min-max normalization does not change it)
    ours = np.nanmean(featurewise_auroc(truth > 0, pred))
    base = np.nanmean(featurewise_auroc(truth > 0, naive))
    print(f"peak-wise AUROC: cmot {ours:.3f}, naive kNN {base:.3f}")
    assert ours > base
    assert ours > 0.65


@pytest.mark.parametrize("name", ["pancancer_rna_from_atac", "pancancer_atac_from_rna"])
@pytest.mark.parametrize("held_out", ["HeLa-S3", "HCT116", "K562"])
def test_unseen_cell_line_recall_at_least_80_and_known_cells_at_most_3_percent_flagged(name, held_out):
    # issue "composition-robust transport", point 2: each cell line left out of the
    # reference, in both directions, over split seeds 0-2 (counts pooled, as in
    # benchmarks/results/outliers_pancancer_robust.md): recall >= 0.8, false flags of
    # the known lines' cells <= 3%
    hits = misses = false = known = 0
    for seed in (0, 1, 2):
        task = _data.load(name, seed=seed)
        keep = np.asarray(task.train_labels) != held_out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = CMOT(random_state=seed).fit(task.train_x[keep], task.train_y[keep])
            model.predict(task.test_y)
        new = np.asarray(task.test_labels) == held_out
        hits, misses = hits + int(model.outliers_[new].sum()), misses + int((~model.outliers_[new]).sum())
        false, known = false + int(model.outliers_[~new].sum()), known + int((~new).sum())
    assert hits / (hits + misses) >= 0.8
    assert false / known <= 0.03


@pytest.mark.parametrize("held_out", ["HeLa-S3", "HCT116", "K562"])
def test_unseen_cell_line_is_flagged_as_poorly_mapped(held_out):
    # leave one cell line out of the source: most of its test cells are flagged, few others
    task = _data.load("pancancer_rna_from_atac", seed=0)
    keep = np.asarray(task.train_labels) != held_out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CMOT(random_state=0).fit(task.train_x[keep], task.train_y[keep])
        model.predict(task.test_y)
    new = np.asarray(task.test_labels) == held_out
    assert model.outliers_[new].mean() >= 0.8
    assert model.outliers_[~new].mean() <= 0.05
