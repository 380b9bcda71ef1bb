"""The image-to-image base (``families/image_to_image.py``): translation in eval mode without
gradient, fixed validation pairs read from ``val_dataloader()`` at fit start, the input | output
| target grid, ``(input, output, target)`` evaluation samples, and the optional latent input."""

from __future__ import annotations

from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from gan_research.errors import ConfigError
from gan_research.families.base import DiscriminatorLoss, GeneratorLoss
from gan_research.families.image_to_image import ImageToImageModule
from gan_research.families.schedule import Schedule
from gan_research.losses import GANObjective, NonSaturatingLoss
from tests.families.trainer import fit

SIZE = 4


class Doubler(nn.Module):
    """a -> 2a (+ z broadcast when given), recording the mode and grad state it ran in."""

    def __init__(self, latent_dim: int | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(2.0))
        self.input_shape = self.output_shape = (1, SIZE, SIZE)
        if latent_dim is not None:
            self.latent_dim = latent_dim
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, a: Tensor, z: Tensor | None = None) -> Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        out = self.weight * a
        return out if z is None else out + z.mean(1).view(-1, 1, 1, 1)


class Critic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (1, SIZE, SIZE)
        self.weight = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x.mean(dim=(1, 2, 3))


class Translator(ImageToImageModule):
    """The smallest family on the base: one D update, then one G update with an L1 term."""

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        a, b = batch
        opt_g, opt_d = self.optimizers()
        fake = self.generator(a)
        with self.optimizer_phase(opt_d):
            real_scores, fake_scores = self.discriminator(b), self.discriminator(fake.detach())
            d_adv = self.objective.adversarial.discriminator_loss(real_scores, fake_scores)
            logs = self.discriminator_update(opt_d, DiscriminatorLoss(d_adv, d_adv, real_scores, fake_scores))
        with self.optimizer_phase(opt_g):
            g_adv = self.objective.adversarial.generator_loss(self.discriminator(fake))
            l1 = (fake - b).abs().mean()
            logs.update(self.generator_update(opt_g, GeneratorLoss(g_adv + l1, {"adv": g_adv, "l1": l1})))
        self.finish_step(logs, batch_size=a.shape[0])


def make(latent_dim: int | None = None, cls: type = Translator, **kwargs: object) -> ImageToImageModule:
    adam = partial(torch.optim.Adam, lr=1e-2)
    return cls(
        Doubler(latent_dim), Critic(), GANObjective(NonSaturatingLoss()), Schedule(), adam, adam, **kwargs
    )


class Pairs(pl.LightningDataModule):
    """(a, b = -a) pairs; only ``val_dataloader`` says which are the validation pairs."""

    def __init__(self, n: int = 5) -> None:
        super().__init__()
        self.a = torch.linspace(-1, 1, n * SIZE * SIZE).view(n, 1, SIZE, SIZE)
        self.b = -self.a

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.a, self.b), batch_size=2, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.a[1:], self.b[1:]), batch_size=2)


def test_no_latent_by_default_and_translate_runs_eval_mode_without_grad():
    model = make()
    assert model.latent_input is False and not hasattr(model, "fixed_noise")
    a = torch.rand(3, 1, SIZE, SIZE)
    model.generator.train()
    out = model.translate(a)
    torch.testing.assert_close(out, 2 * a)
    assert not out.requires_grad and model.generator.calls[-1] == (False, False)
    assert model.generator.training  # mode restored
    torch.testing.assert_close(model(a), 2 * a)


def test_fit_takes_the_fixed_pairs_from_val_dataloader_and_trains_both_networks():
    model, data = make(num_fixed_samples=3), Pairs()
    g0, d0 = model.generator.weight.item(), model.discriminator.weight.item()
    rng = torch.get_rng_state()
    fit(model, data)
    assert torch.equal(model.fixed_a, data.a[1:4]) and torch.equal(model.fixed_b, data.b[1:4])
    assert model.generator.weight.item() != g0 and model.discriminator.weight.item() != d0
    logs = model.last_step_logs
    for key in ("train/d_loss", "train/d_grad_norm", "train/g_loss", "train/g_adv", "train/g_l1"):
        assert key in logs, key
    assert "train/grad_norm_ratio" in logs and "train/lr_g" in logs
    assert rng.shape == torch.get_rng_state().shape
    # input | output | target, a fixed pair per row.
    grid, nrow = model.grid_samples()
    a, b = model.fixed_pairs()
    assert nrow == 3 and grid.shape == (9, 1, SIZE, SIZE)
    torch.testing.assert_close(grid[0::3], a)
    torch.testing.assert_close(grid[1::3], model.translate(a))
    torch.testing.assert_close(grid[2::3], b)
    # (input, output, target) of the first n validation pairs, the split repeated when smaller.
    inputs, outputs, targets = model.sample_for_evaluation(6)
    torch.testing.assert_close(inputs, torch.cat([data.a[1:], data.a[1:3]]))
    torch.testing.assert_close(targets, torch.cat([data.b[1:], data.b[1:3]]))
    torch.testing.assert_close(outputs, model.translate(inputs))


def test_networks_without_the_contracts_attributes_are_one_config_error():
    """A noise generator (no input_shape) is refused when the module is built, naming the key."""
    adam = partial(torch.optim.Adam, lr=1e-2)
    with pytest.raises(ConfigError, match=r"model.generator \(Linear\) lacks attribute\(s\) \['input_shape'"):
        Translator(nn.Linear(4, 4), Critic(), GANObjective(NonSaturatingLoss()), Schedule(), adam, adam)


def test_grid_needs_the_fixed_pairs():
    with pytest.raises(RuntimeError, match="set_fixed_batch"):
        make().grid_samples()


def test_optional_latent_input_draws_a_latent_per_input():
    class Multimodal(Translator):
        latent_input = True

    model = make(latent_dim=3, cls=Multimodal, num_fixed_samples=4)
    assert model.fixed_noise.shape == (4, 3)
    a = torch.zeros(2, 1, SIZE, SIZE)
    z = torch.ones(2, 3)
    torch.testing.assert_close(model.translate(a, z), torch.ones(2, 1, SIZE, SIZE))
    torch.manual_seed(0)
    first = model.translate(a)
    torch.manual_seed(0)
    torch.testing.assert_close(model.translate(a), first)
    assert not torch.equal(first[0], first[1])  # one latent per input
    with pytest.raises(ConfigError, match="latent_dim"):
        make(latent_dim=None, cls=Multimodal)
