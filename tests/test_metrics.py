"""Metric functions on constructed tensors: closed forms, brute force, torchmetrics, sanity cases."""

import math

import numpy as np
import pytest
import torch

from largo.errors import LargoError
from largo.metrics.class_matched import class_matched, default_class_metrics
from largo.metrics.classifier import accuracy_table
from largo.metrics.fid import GaussianStats, fd_from_features, frechet_distance, gaussian_stats
from largo.metrics.isc import inception_score
from largo.metrics.kid import kid, mmd2_unbiased, polynomial_kernel, resolve_subset_size
from largo.metrics.prc import precision_recall
from largo.metrics.variance_gap import pixel_stats, variance_gap


def _rotation(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


# -- Fréchet distance -------------------------------------------------------------------------------
def test_fd_equals_closed_form_for_commuting_covariances():
    d = 16
    rng = np.random.default_rng(0)
    q = _rotation(d, 1)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_fd_equals_closed_form_for_general_2x2():
    # For 2×2 M with positive eigenvalues: tr √M = √(tr M + 2 √det M).
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.2], [-0.2, 1.5]])
    m = s1 @ s2
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n,d", [(500, 32), (40, 64)])  # also fewer samples than dimensions (singular Σ)
def test_fd_of_a_set_against_itself_is_zero(n, d):
    x = torch.randn(n, d) * 3 + 1
    scale = float(gaussian_stats(x)[1].trace())
    assert fd_from_features(x, x) < 1e-8 * scale


def test_fd_low_rank_shortcut_matches_the_full_computation():
    g = torch.Generator().manual_seed(7)
    few, many = torch.randn(20, 50, generator=g), torch.randn(300, 50, generator=g) * 0.7 + 0.3
    full = frechet_distance(*gaussian_stats(few), *gaussian_stats(many))
    assert fd_from_features(few, many) == pytest.approx(full, rel=1e-7)  # Σ₁^{1/2} of a rank-19 Σ₁ rounds a bit
    assert fd_from_features(many, few) == pytest.approx(full, rel=1e-7)


def test_fd_grows_with_a_mean_shift_and_streaming_stats_match():
    x = torch.randn(400, 8, dtype=torch.float64)
    assert fd_from_features(x, x + 2.0) == pytest.approx(8 * 4.0, rel=1e-9)
    s = GaussianStats(8)
    for part in x.split(70):
        s.update(part)
    mu, sigma = s.finalize()
    mu2, sigma2 = gaussian_stats(x)
    np.testing.assert_allclose(mu, mu2, atol=1e-12)
    np.testing.assert_allclose(sigma, sigma2, atol=1e-10)


# -- KID ---------------------------------------------------------------------------------------------
def test_mmd2_matches_brute_force_unbiased_estimator():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 4, generator=g).double(), torch.randn(7, 4, generator=g).double() + 0.5
    k = lambda a, b: (float(a @ b) / 4 + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-9, abs=1e-12)
    assert polynomial_kernel(x, y).shape == (5, 7)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`")
def test_kid_agrees_with_torchmetrics():
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(60, 16, generator=g), torch.randn(60, 16, generator=g) * 1.3 + 0.2
    ref = float(tm_kid.poly_mmd(real.double(), fake.double()))
    assert mmd2_unbiased(real, fake) == pytest.approx(ref, rel=1e-9)
    # Through the metric's own update/compute with an identity "feature extractor": subsets of the full
    # size are permutations of the whole set, so every subset gives the same value.
    metric = tm_kid.KernelInceptionDistance(feature=torch.nn.Identity(), subsets=3, subset_size=60)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    mean, _ = metric.compute()
    ours = kid(real, fake, subsets=3, subset_size=60)
    assert ours["mean"] == pytest.approx(float(mean), rel=1e-9) and ours["std"] == 0.0


def test_kid_subsets_mean_std_and_too_few_images():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(80, 8, generator=g), torch.randn(50, 8, generator=g)
    r = kid(real, fake, subsets=10, subset_size=20, seed=0)
    assert r["subset_size"] == 20 and r["std"] > 0
    assert r == kid(real, fake, subsets=10, subset_size=20, seed=0)  # seeded
    assert abs(r["mean"]) < 5 * r["std"] + 1e-3  # same distribution: unbiased, near 0
    assert resolve_subset_size(80, 50, None) == 50
    with pytest.raises(LargoError, match="subset size 100"):
        kid(real, fake, subset_size=100)


# -- Inception Score ---------------------------------------------------------------------------------
def test_inception_score_extremes():
    assert inception_score(torch.zeros(100, 10), splits=5)["mean"] == pytest.approx(1.0)
    confident = torch.eye(10).repeat(10, 1) * 50  # every class equally often, each image certain
    assert inception_score(confident, splits=1)["mean"] == pytest.approx(10.0, rel=1e-6)


# -- precision / recall ------------------------------------------------------------------------------
def test_precision_recall_identical_and_disjoint_sets():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(3))
    same = precision_recall(x, x.clone(), k=3)
    assert same["precision"] == pytest.approx(1.0) and same["recall"] == pytest.approx(1.0)
    far = precision_recall(x, x + 1000.0, k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_precision_recall_half_the_samples_off_manifold():
    g = torch.Generator().manual_seed(4)
    real = torch.randn(300, 4, generator=g)
    fake = torch.cat([torch.randn(150, 4, generator=g), torch.randn(150, 4, generator=g) + 50])
    r = precision_recall(real, fake, k=3)
    assert 0.4 < r["precision"] < 0.55 and r["recall"] > 0.8


# -- class-matched metrics ---------------------------------------------------------------------------
def test_class_matched_table_shows_the_wrong_class():
    g = torch.Generator().manual_seed(5)
    k, d, n = 4, 8, 60
    means = torch.eye(k, d) * 6
    real_labels = torch.arange(k).repeat_interleave(n)
    real = means[real_labels] + torch.randn(k * n, d, generator=g)
    gen_labels = torch.arange(k).repeat_interleave(n)
    drawn_as = gen_labels.clone()
    drawn_as[gen_labels == 2] = 3  # class 2 is generated looking like class 3
    gen = means[drawn_as] + torch.randn(k * n, d, generator=g)
    r = class_matched(real, real_labels, gen, gen_labels, list("abcd"), default_class_metrics(kid_subsets=5))
    fd = {row["class"]: row["fd"] for row in r["per_class"]}
    kd = {row["class"]: row["kid"] for row in r["per_class"]}
    assert r["classes_evaluated"] == 4 and r["per_class"][0]["n_generated"] == n
    assert fd[2] > 50 and max(fd[c] for c in (0, 1, 3)) < 2.0
    assert kd[2] > 10 * max(abs(kd[c]) for c in (0, 1, 3))
    assert r["mean"]["fd"] == pytest.approx(sum(fd.values()) / 4)
    # The unconditional FD barely sees it; the class-matched table does.
    assert fd_from_features(real, gen) < fd[2] / 4
    # The classifier-accuracy table shows it too.
    table = accuracy_table(drawn_as, gen_labels, list("abcd"))
    assert table["overall"] == pytest.approx(0.75) and table["per_class"][2]["accuracy"] == 0.0


def test_class_matched_skips_classes_with_too_few_images():
    real, rl = torch.randn(20, 3), torch.tensor([0] * 10 + [1] * 9 + [2])
    gen, gl = torch.randn(12, 3), torch.tensor([0] * 6 + [1] * 6)
    r = class_matched(real, rl, gen, gl, ["a", "b", "c"], default_class_metrics(kid_subsets=2))
    assert [row["class"] for row in r["per_class"]] == [0, 1] and r["skipped_classes"] == [2]


# -- variance gap ------------------------------------------------------------------------------------
def test_pixel_stats_on_known_images():
    imgs = torch.zeros(2, 2, 4, 4, dtype=torch.uint8)
    imgs[:, 0] = 255  # channel 0 all white, channel 1 all black
    imgs[1, 1, :2] = 255  # except half of one image: channel 1 has 1/4 white pixels
    s = pixel_stats(imgs)
    assert s["mean"] == pytest.approx([1.0, 0.25])
    assert s["var"][0] == pytest.approx(0.0)
    assert s["var"][1] == pytest.approx(0.25 * 0.75 * 32 / 31)  # unbiased over 32 pixels
    assert s["histogram"][1][0] == pytest.approx(0.75) and s["histogram"][1][255] == pytest.approx(0.25)


def test_variance_gap_of_a_contrast_reduced_copy():
    g = torch.Generator().manual_seed(6)
    real = torch.randint(0, 256, (50, 3, 8, 8), generator=g, dtype=torch.uint8)
    gen = ((real.float() - 127.5) * 0.5 + 127.5).round().to(torch.uint8)  # half the contrast
    v = variance_gap(real, gen)
    assert v["var_ratio"] == pytest.approx([0.25] * 3, abs=0.01)
    assert v["var_ratio_mean"] == pytest.approx(0.25, abs=0.01)
    assert all(abs(m) < 0.01 for m in v["mean_diff"])
    assert all(h > 0.4 for h in v["histogram_l1"])
    assert variance_gap(real, real)["var_ratio"] == pytest.approx([1.0] * 3)
