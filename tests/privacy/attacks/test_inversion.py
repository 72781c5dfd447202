import numpy as np
import pytest
import torch
from torch import nn

from medfed.errors import AttackError
from medfed.privacy.attacks import inversion as inv
from medfed.privacy.attacks.quality import best_matches, psnr, ssim


def _tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))


def _image() -> torch.Tensor:
    """A smooth 8x8 picture in [-1, 1]: a bright disc on a gradient."""
    yy, xx = np.mgrid[0:8, 0:8] / 7.0
    picture = 0.6 * xx + 0.4 * ((xx - 0.4) ** 2 + (yy - 0.6) ** 2 < 0.08)
    return torch.from_numpy((picture * 2 - 1).astype(np.float32)).view(1, 1, 8, 8)


def _quality(x: torch.Tensor, inputs: np.ndarray) -> float:
    return best_matches((x.numpy() + 1) / 2, (inputs + 1) / 2)[0].ssim


def test_one_image_is_recovered_from_one_gradient() -> None:
    x, y = _image(), torch.tensor([1.0])
    model = _tiny_model(0)
    simulate = inv.gradient_simulator(model, y)
    observed = [g.detach() for g in simulate(x)]
    config = inv.InversionConfig(iterations=400, tv_weight=1e-3)
    result = inv.invert(simulate, observed, (1, 1, 8, 8), config, torch.Generator().manual_seed(0))
    assert _quality(x, result.inputs) >= 0.6
    assert result.objective < 0.1


def test_one_image_is_recovered_from_an_sgd_update() -> None:
    """The coordinator sees new - old weights; one SGD step is -lr times the gradient."""
    x, y = _image(), torch.tensor([0.0])
    model = _tiny_model(1)
    simulate = inv.local_training_simulator(model, y, steps=1, batch_size=1, learning_rate=0.1)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(-1), y).backward()
    optimizer.step()
    observed = [p.detach() - s for p, s in zip(model.parameters(), start, strict=True)]
    np.testing.assert_allclose(
        torch.cat([t.flatten() for t in simulate(x)]).detach().numpy(),
        torch.cat([t.flatten() for t in observed]).numpy(),
        atol=1e-6,
    )
    config = inv.InversionConfig(iterations=400, tv_weight=1e-3)
    result = inv.invert(simulate, observed, (1, 1, 8, 8), config, torch.Generator().manual_seed(0))
    assert _quality(x, result.inputs) >= 0.6


def test_unrolled_adam_matches_torch_adam() -> None:
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    model = _tiny_model(2)
    simulate = inv.local_training_simulator(
        model, y, steps=3, batch_size=2, learning_rate=0.01, optimizer="adam", seed=5
    )
    simulated = simulate(x)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(5)
    done = 0
    while done < 3:
        order = torch.randperm(4, generator=generator)
        for begin in range(0, 4, 2):
            if done == 3:
                break
            index = order[begin : begin + 2]
            optimizer.zero_grad()
            logits = model(x[index]).squeeze(-1)
            nn.functional.binary_cross_entropy_with_logits(logits, y[index]).backward()
            optimizer.step()
            done += 1
    for got, p, s in zip(simulated, model.parameters(), start, strict=True):
        np.testing.assert_allclose(got.detach().numpy(), (p - s).detach().numpy(), atol=1e-6)


def test_summed_simulator_adds_sites() -> None:
    model = _tiny_model(3)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1.0, 0.0, 1.0])
    a = inv.gradient_simulator(model, y[:1])
    b = inv.gradient_simulator(model, y[1:])
    summed = inv.summed_simulator([a, b], [1, 2])(x)
    for got, first, second in zip(summed, a(x[:1]), b(x[1:]), strict=True):
        np.testing.assert_allclose(got.detach().numpy(), (first + second).detach().numpy())


@pytest.mark.parametrize("label", [0, 1])
def test_label_of_one_image_comes_from_the_bias_gradient(label: int) -> None:
    model = _tiny_model(4)
    gradients = inv.gradient_simulator(model, torch.tensor([float(label)]))(_image())
    assert inv.recover_label(float(gradients[-1].item())) == label


def test_positive_count_of_a_batch() -> None:
    model = _tiny_model(5)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.1
    y = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    bias_gradient = float(inv.gradient_simulator(model, y)(x)[-1].item())
    with torch.no_grad():
        public = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.1
        mean_probability = float(torch.sigmoid(model(public)).mean())
    assert inv.count_positive_labels(bias_gradient, 8, mean_probability) == 6


def test_quality_scores() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((1, 12, 12))
    assert ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, a) == float("inf")
    assert psnr(a, np.clip(a + 0.1, 0, 1)) > 15
    matches = best_matches(np.stack([a, 1 - a]), np.stack([1 - a, a]))
    assert [m.index for m in matches] == [1, 0]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(AttackError):
        inv.InversionConfig(iterations=0)
    with pytest.raises(AttackError):
        inv.recover_label(0.0)
    with pytest.raises(AttackError):
        ssim(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)))


def test_denoise_removes_isolated_pixels_and_keeps_edges() -> None:
    image = np.zeros((1, 1, 12, 12), np.float32)
    image[..., :, 6:] = 1.0  # an edge down the middle
    speckled = image.copy()
    speckled[0, 0, 2, 2] = 1.0
    speckled[0, 0, 9, 9] = 0.0
    cleaned = inv.denoise(speckled)
    assert cleaned.shape == image.shape and cleaned.dtype == np.float32
    np.testing.assert_array_equal(cleaned, image)
    assert ssim(image[0], cleaned[0]) > ssim(image[0], speckled[0])
    with pytest.raises(AttackError, match="rows, c, h, w"):
        inv.denoise(image[0])
