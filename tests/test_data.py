import dataclasses

import pytest
import torch

from largo.data import BatchStream, load_images


def test_fashion_mnist_official_splits_padded_to_32(data_root):
    train = load_images("fashion_mnist", "train", 32, str(data_root))
    test = load_images("fashion_mnist", "test", 32, str(data_root))
    assert train.images.shape == (60000, 1, 32, 32) and test.images.shape == (10000, 1, 32, 32)
    assert train.images.dtype == torch.uint8
    assert train.class_names[0] == "T-shirt/top" and len(train.class_names) == 10
    assert train.labels[:3].tolist() == [9, 0, 0]  # the first labels of the official file
    assert train.images[:, :, :2].max() == 0  # zero padding
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_mnist_digits(data_root):
    s = load_images("mnist", "test", 32, str(data_root))
    assert s.class_names == [str(i) for i in range(10)]
    assert s.labels[:4].tolist() == [7, 2, 1, 0]


@pytest.mark.slow
def test_flowers_generative_split_merges_all_official_splits(data_root):
    train = load_images("flowers102", "train", 32, str(data_root))
    test = load_images("flowers102", "test", 32, str(data_root))
    assert len(train) + len(test) == 8189 and len(test) == round(0.05 * 8189)
    assert train.images.shape[1:] == (3, 32, 32)
    assert len(train.class_names) == 102 and train.class_names[0] == "pink primrose"
    assert set(train.labels.unique().tolist()) == set(range(102))
    again = load_images("flowers102", "test", 32, str(data_root))  # from the cache, same seeded split
    assert torch.equal(again.images, test.images)


def test_balanced_stream_draws_classes_near_uniformly():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([400, 40, 100, 10])])
    from largo.data import ImageSet
    data = ImageSet(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), labels, list("abcd"))
    stream = BatchStream(data, 50, balanced=True, seed=0)
    drawn = torch.cat([stream.next()[1] for _ in range(200)])
    freq = torch.bincount(drawn, minlength=4).float() / len(drawn)
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=0.02)
    plain = BatchStream(data, 50, balanced=False, seed=0)
    drawn = torch.cat([plain.next()[1] for _ in range(11)])  # one epoch: proportional to class sizes
    assert torch.bincount(drawn)[0] > 5 * torch.bincount(drawn)[3]


def test_stream_resumes_exactly():
    from largo.data import ImageSet
    data = ImageSet(torch.arange(70, dtype=torch.uint8).reshape(70, 1, 1, 1).expand(70, 1, 2, 2).contiguous(),
                    torch.arange(70) % 7, list("abcdefg"))
    a = BatchStream(data, 16, seed=3)
    for _ in range(6):  # crosses an epoch boundary
        a.next()
    state = a.state_dict()
    expected = [a.next()[0] for _ in range(5)]
    b = BatchStream(data, 16, seed=3)
    b.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(expected, [b.next()[0] for _ in range(5)]))


def test_long_tailed_subset_follows_the_exponential_profile():
    from largo.data import ImageSet, long_tailed
    labels = torch.arange(1000) % 10  # 100 per class
    data = ImageSet(torch.arange(1000, dtype=torch.int64).reshape(1000, 1, 1, 1).to(torch.uint8), labels,
                    [str(c) for c in range(10)])
    lt = long_tailed(data, 10.0, seed=0)
    counts = torch.bincount(lt.labels, minlength=10).tolist()
    assert counts == [round(100 * 10 ** (-c / 9)) for c in range(10)]  # 100, 77, 60, …, 10
    assert counts[0] == 10 * counts[-1]
    assert torch.equal(long_tailed(data, 10.0, seed=0).labels, lt.labels)  # seeded, so runs agree
    assert long_tailed(data, 1.0) is data


def test_imbalance_reaches_training(data_root, tmp_path):
    from helpers import tiny_config
    from largo.train.trainer import Trainer
    cfg = tiny_config(steps=1)
    cfg.data = dataclasses.replace(cfg.data, imbalance=20.0)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    counts = torch.bincount(trainer.stream.labels, minlength=10)
    assert counts[0] == 6000 and counts[9] == 300
