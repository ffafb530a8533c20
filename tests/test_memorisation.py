"""The memorisation check (`largo.metrics.memorisation`): exact nearest neighbours, mirrors, the held-out yardstick."""

import torch

from largo.metrics.memorisation import compare, nearest_neighbours, nearest_training, pixel_vectors, with_mirrors


def test_nearest_neighbours_is_exact():
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(37, 5, generator=g), torch.randn(101, 5, generator=g)
    d, i = nearest_neighbours(q, r, chunk=8)  # several reference chunks
    full = ((q[:, None, :].double() - r[None].double()) ** 2).sum(-1).sqrt()
    assert torch.equal(i, full.argmin(1))
    assert torch.allclose(d.double(), full.min(1).values, atol=1e-5)


def test_pixel_distance_is_rms_in_8_bit_levels():
    a = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    b = torch.full((1, 3, 4, 4), 10, dtype=torch.uint8)
    d, _ = nearest_neighbours(pixel_vectors(a), pixel_vectors(b))
    assert abs(float(d) - 10.0) < 1e-4


def test_copies_and_mirrors_are_found_and_flagged():
    g = torch.Generator().manual_seed(1)
    train = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=g)
    heldout = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g)
    # 10 samples: 5 exact copies, 3 mirrored copies, 2 new images
    samples = torch.cat([train[:5], train[10:13].flip(-1),
                         torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g)])
    out = nearest_training(samples, heldout, train, pixel_vectors, mirror=True)
    assert out["sample_d"][:8].max() < 1e-4
    assert out["sample_idx"][:8].tolist() == [0, 1, 2, 3, 4, 10, 11, 12]
    s = out["summary"]
    assert s["share_samples_below_heldout_q0.01"] == 0.8
    assert s["share_heldout_below_heldout_q0.01"] <= 0.05
    assert s["n_samples"] == 10 and s["n_heldout"] == 40
    without = nearest_training(samples, heldout, train, pixel_vectors, mirror=False)
    assert without["sample_d"][5:8].min() > 1.0  # mirrors are not found without the mirror search
    assert len(with_mirrors(train)) == 100


def test_compare_without_copying_is_near_one_percent():
    g = torch.Generator().manual_seed(2)
    s = compare(torch.rand(20000, generator=g) + 1, torch.rand(20000, generator=g) + 1)
    assert abs(s["share_samples_below_heldout_q0.01"] - 0.01) < 0.005
    assert list(s["samples"]) == ["q0", "q0.01", "q0.05", "q0.25", "q0.5", "q0.75", "q0.95", "q1"]
    assert abs(s["median_ratio_samples_to_heldout"] - 1) < 0.02
