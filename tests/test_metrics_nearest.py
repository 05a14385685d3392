"""nbhelpers.metrics.nearest: nearest training images of samples, on tiny synthetic images
whose distances are known by construction."""
import math

import pytest
import torch

from nbhelpers.metrics.nearest import copy_check, matched_images, nearest_neighbours


def _images(n: int, size: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_a_copy_is_found_at_distance_zero_and_a_shift_at_its_rms():
    ref = _images(20)
    q = torch.stack([ref[7], ref[3] + 0.1])  # an exact copy; a copy with every pixel moved by 0.1
    nn = nearest_neighbours(q, ref)
    assert nn.index.tolist() == [7, 3]
    assert nn.distance[0].item() == pytest.approx(0.0, abs=1e-6)
    assert nn.distance[1].item() == pytest.approx(0.1, rel=1e-5)  # RMS of a constant 0.1 difference
    assert not nn.flipped.any()
    # the second-nearest is another image: for the copy, its distance to that image
    d_all = (ref - ref[7]).pow(2).flatten(1).mean(1).sqrt()
    d_all[7] = math.inf
    assert nn.second[0].item() == pytest.approx(d_all.min().item(), rel=1e-5)
    assert nn.relative[0].item() == pytest.approx(0.0, abs=1e-6)


def test_mirrored_copies_count_as_copies_only_with_mirror():
    ref = _images(10, seed=1)
    q = ref[4:5].flip(-1)
    plain, both = nearest_neighbours(q, ref), nearest_neighbours(q, ref, mirror=True)
    assert plain.distance.item() > 0.1
    assert both.index.item() == 4 and both.flipped.item() and both.distance.item() == pytest.approx(0.0, abs=1e-6)


def test_leave_one_out_excludes_the_image_and_its_mirror():
    ref = _images(12, seed=2)
    ref[5] = ref[2].flip(-1)  # image 5 is the mirror of image 2
    nn = nearest_neighbours(ref, ref, mirror=True, exclude=torch.arange(12))
    assert (nn.index != torch.arange(12)).all()  # never itself
    assert nn.index[2].item() == 5 and nn.index[5].item() == 2  # each other's mirror: distance 0
    assert nn.distance[2].item() == pytest.approx(0.0, abs=1e-6)
    assert nn.distance[0].item() > 0.1


def test_uint8_and_float_images_agree_and_chunks_do_not_matter():
    ref8 = torch.randint(0, 256, (15, 1, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    q8 = torch.randint(0, 256, (9, 1, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    a = nearest_neighbours(q8, ref8, chunk=2)
    b = nearest_neighbours(q8.float() / 127.5 - 1, ref8.float() / 127.5 - 1, chunk=100)
    assert torch.equal(a.index, b.index)
    assert torch.allclose(a.distance, b.distance, atol=1e-5)
    brute = torch.cdist(q8.float().flatten(1) / 127.5, ref8.float().flatten(1) / 127.5) / 5  # √(Σ/25) = ‖·‖/5
    assert torch.allclose(a.distance, brute.min(1).values, atol=1e-5)


def test_errors_name_the_bad_shapes():
    with pytest.raises(ValueError, match="same image shape"):
        nearest_neighbours(_images(2, size=4), _images(5, size=5))
    with pytest.raises(ValueError, match="one reference index per query"):
        nearest_neighbours(_images(3), _images(5), exclude=torch.arange(2))
    with pytest.raises(ValueError, match="at least 2 images"):
        nearest_neighbours(_images(3), _images(1))
    with pytest.raises(ValueError, match="quantile"):
        copy_check(_images(3), _images(5), quantile=1.5)


def test_copy_check_tells_copies_from_new_images():
    train = _images(200, seed=5)
    g = torch.Generator().manual_seed(6)
    copies = train[torch.randperm(200, generator=g)[:30]]
    copies[::2] = copies[::2].flip(-1)  # half of them mirrored, as random flips would
    fresh = _images(30, seed=7)  # new draws from the training distribution
    c, f = copy_check(copies, train, n_train=100), copy_check(fresh, train, n_train=100)
    assert c.near_copies == 1.0 and c.ratio == pytest.approx(0.0, abs=1e-5)
    assert f.near_copies <= 0.2  # new images are about as far from the set as its own members
    assert 0.8 < f.ratio < 1.25
    d = f.as_dict()
    assert d["n_samples"] == 30 and d["n_train_queries"] == 100


def test_matched_images_returns_the_match_in_its_orientation():
    ref = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(8))
    q = torch.stack([ref[1].float() / 127.5 - 1, ref[4].flip(-1).float() / 127.5 - 1])
    nn = nearest_neighbours(q, ref, mirror=True)
    assert nn.flipped.tolist() == [False, True]
    assert torch.allclose(matched_images(nn, ref), q, atol=1e-6)
    assert torch.allclose(matched_images(nn, ref, torch.tensor([1])), q[1:], atol=1e-6)
