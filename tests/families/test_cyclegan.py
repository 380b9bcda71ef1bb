"""CycleGAN's step: the cycle, identity and adversarial terms against hand computations with
the reference's formulas (junyanz/pytorch-CycleGAN-and-pix2pix, models/cycle_gan_model.py),
the history pool, the two optimiser phases, checkpoints, grids, errors, and short runs of the
embedded experiment."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from gan_research.errors import ConfigError
from gan_research.families.base import AdversarialModule
from gan_research.families.cyclegan import CycleGAN, HistoryPool
from gan_research.families.schedule import Schedule
from gan_research.losses import GANObjective, LeastSquaresLoss, NonSaturatingLoss
from gan_research.networks.pairs import DiscriminatorPair, TranslationPair
from gan_research.networks.patchgan import PatchGANDiscriminator
from gan_research.networks.resnet_generator import ResnetGenerator
from gan_research.train import build, train
from gan_research.utils.data_spec import DataKind, DataSpec
from gan_research.utils.jsonl_logger import read_records
from tests.families.trainer import fit

SIZE = 8


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: on a shared CPU, synchronising several threads costs more than the
    convolutions themselves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ helpers
class Affine(nn.Module):
    """x -> scale * x + shift (per-image channels mapped by repetition / mean): a generator whose
    outputs are known by hand."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0, c_in: int = 1, c_out: int = 1) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.shift = nn.Parameter(torch.tensor(float(shift)))
        self.input_shape = (c_in, SIZE, SIZE)
        self.output_shape = (c_out, SIZE, SIZE)

    def forward(self, x: Tensor) -> Tensor:
        c_out = self.output_shape[0]
        if x.shape[1] != c_out:
            x = x.mean(1, keepdim=True).expand(-1, c_out, -1, -1)
        return self.scale * x + self.shift


def resnet(c_in: int = 1, c_out: int = 1) -> ResnetGenerator:
    return ResnetGenerator(c_in, c_out, ngf=4, n_blocks=1, image_size=SIZE)


def patchgan(channels: int = 1) -> PatchGANDiscriminator:
    return PatchGANDiscriminator(channels, ndf=4, n_layers=1, norm="instance", image_size=SIZE)


def make_module(
    generator: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    loss: object | None = None,
    schedule: Schedule | None = None,
    cls: type[CycleGAN] = CycleGAN,
    **kwargs: object,
) -> CycleGAN:
    adam = partial(torch.optim.Adam, lr=2e-3, betas=(0.5, 0.999))
    return cls(
        generator or TranslationPair(resnet(), resnet()),
        discriminator or DiscriminatorPair(patchgan(), patchgan()),
        GANObjective(loss or LeastSquaresLoss()),
        schedule or Schedule(),
        adam,
        adam,
        **kwargs,
    )


class Pairs(pl.LightningDataModule):
    """Unpaired (a, b) batches of random images, in a fixed order."""

    name = "test_pairs"
    paired = False

    def __init__(self, n: int = 8, batch_size: int = 2, channels_a: int = 1, channels_b: int = 1) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a = torch.rand(n, channels_a, SIZE, SIZE, generator=gen) * 2 - 1
        self.b = torch.rand(n, channels_b, SIZE, SIZE, generator=gen) * 2 - 1
        self.batch_size = batch_size
        self.a_shape = (channels_a, SIZE, SIZE)
        self.b_shape = self.sample_shape = (channels_b, SIZE, SIZE)
        # What the family reads: the declaration every datamodule has.
        self.spec = DataSpec(
            self.name,
            DataKind.UNPAIRED,
            self.b_shape,
            channels=channels_b,
            image_size=SIZE,
            channels_a=channels_a,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(drop_last=False)

    def _loader(self, drop_last: bool) -> DataLoader:
        # Its own generator, as GANDataModule's: iterating does not draw from the global RNG.
        return DataLoader(
            TensorDataset(self.a, self.b),
            batch_size=self.batch_size,
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(0),
        )


def params(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def images(n: int = 4, channels: int = 1, seed: int = 0) -> Tensor:
    return torch.rand(n, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------- loss terms
def test_cycle_and_identity_terms_by_hand():
    # G(x) = x + 0.1, F(x) = x: F(G(a)) = a + 0.1, G(F(b)) = b + 0.1, G(b) = b + 0.1, F(a) = a.
    model = make_module(TranslationPair(Affine(1.0, 0.1), Affine(1.0, 0.0)))
    a, b = images(seed=1), images(seed=2)
    terms, fake_a, fake_b = model.generator_losses(a, b)
    assert terms["cycle"].item() == pytest.approx(10.0 * (0.1 + 0.1), abs=1e-5)
    assert terms["identity"].item() == pytest.approx(0.5 * 10.0 * (0.1 + 0.0), abs=1e-5)
    torch.testing.assert_close(fake_b, a + 0.1)
    torch.testing.assert_close(fake_a, b)

    # G(x) = 2x, F(x) = x / 2: perfect cycles, identity |b| + |a| / 2 per pixel.
    model = make_module(
        TranslationPair(Affine(2.0, 0.0), Affine(0.5, 0.0)), cycle_weight=4.0, identity_weight=0.25
    )
    terms, _, _ = model.generator_losses(a, b)
    assert terms["cycle"].item() == pytest.approx(0.0, abs=1e-6)
    expected = 0.25 * 4.0 * (b.abs().mean() + 0.5 * a.abs().mean())
    assert terms["identity"].item() == pytest.approx(expected.item(), rel=1e-5)

    model = make_module(TranslationPair(Affine(2.0, 0.0), Affine(0.5, 0.0)), identity_weight=0.0)
    assert model.generator_losses(a, b)[0]["identity"].item() == 0.0


def reference_g_loss(model: CycleGAN, a: Tensor, b: Tensor, mode: str) -> Tensor:
    """backward_G of the reference, its netG_A = our G, netG_B = F, netD_A = our D_B, netD_B = D_A."""
    net_g_a, net_g_b = model.generator.a_to_b, model.generator.b_to_a
    net_d_a, net_d_b = model.discriminator.d_b, model.discriminator.d_a

    def criterion(pred: Tensor, target_is_real: bool) -> Tensor:
        target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
        if mode == "lsgan":
            return nn.MSELoss()(pred, target)
        return nn.BCEWithLogitsLoss()(pred, target)

    lambda_idt, lambda_a, lambda_b = 0.5, 10.0, 10.0
    fake_b, fake_a = net_g_a(a), net_g_b(b)
    rec_a, rec_b = net_g_b(fake_b), net_g_a(fake_a)
    loss_idt_a = nn.L1Loss()(net_g_a(b), b) * lambda_b * lambda_idt
    loss_idt_b = nn.L1Loss()(net_g_b(a), a) * lambda_a * lambda_idt
    loss_g_a = criterion(net_d_a(fake_b), True)
    loss_g_b = criterion(net_d_b(fake_a), True)
    loss_cycle_a = nn.L1Loss()(rec_a, a) * lambda_a
    loss_cycle_b = nn.L1Loss()(rec_b, b) * lambda_b
    return loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b


def reference_d_loss(net_d: nn.Module, real: Tensor, fake: Tensor, mode: str) -> Tensor:
    """backward_D_basic of the reference: 0.5 (L(D(real), 1) + L(D(fake), 0))."""
    loss = nn.MSELoss() if mode == "lsgan" else nn.BCEWithLogitsLoss()
    pred_real, pred_fake = net_d(real), net_d(fake)
    return 0.5 * (loss(pred_real, torch.ones_like(pred_real)) + loss(pred_fake, torch.zeros_like(pred_fake)))


@pytest.mark.parametrize(("mode", "loss"), [("lsgan", LeastSquaresLoss()), ("vanilla", NonSaturatingLoss())])
def test_total_g_loss_and_d_losses_equal_the_reference(mode, loss):
    torch.manual_seed(0)
    model = make_module(loss=loss)
    # Non-trivial D outputs (the reference init gives near-zero logits everywhere).
    for net in model.discriminator.modules():
        if isinstance(net, nn.Conv2d):
            nn.init.normal_(net.weight, 0.0, 0.3)
    a, b = images(seed=3), images(seed=4)
    terms, fake_a, fake_b = model.generator_losses(a, b)
    total = terms["adv"] + terms["cycle"] + terms["identity"]
    torch.testing.assert_close(total, reference_g_loss(model, a, b, mode))

    d_terms, real_scores, _ = model.discriminator_losses(a, b, fake_a.detach(), fake_b.detach())
    # Our D_A judges domain A (real a vs F(b)): the reference's loss_D_B; D_B is its loss_D_A.
    torch.testing.assert_close(d_terms["a"], reference_d_loss(model.discriminator.d_a, a, fake_a, mode))
    torch.testing.assert_close(d_terms["b"], reference_d_loss(model.discriminator.d_b, b, fake_b, mode))
    assert real_scores.numel() == 2 * model.discriminator.d_a(a).numel()


def test_adversarial_term_weighs_as_the_reference_mse():
    # Constant D outputs c: the reference's G term is (c - 1)^2 per D, not our lsgan's (c - 1)^2 / 2.
    class Const(nn.Module):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = nn.Parameter(torch.tensor(value))
            self.input_shape = (1, SIZE, SIZE)

        def forward(self, x: Tensor) -> Tensor:
            return self.value.expand(x.shape[0], 1, 2, 2)

    model = make_module(
        TranslationPair(Affine(), Affine()), DiscriminatorPair(Const(0.2), Const(-0.5)), cycle_weight=0.0
    )
    terms, _, _ = model.generator_losses(images(), images(seed=5))
    assert terms["adv"].item() == pytest.approx((0.2 - 1) ** 2 + (-0.5 - 1) ** 2, rel=1e-6)


# ---------------------------------------------------------------------- history pool
def test_pool_fills_then_returns_stored_images_half_the_time():
    torch.manual_seed(0)
    pool = HistoryPool(5)
    first = torch.arange(5.0).view(5, 1, 1, 1)
    out = pool.query(first)
    assert torch.equal(out, first) and pool.count == 5
    assert torch.equal(pool.images, first)

    swapped = 0
    trials = 2000
    for i in range(trials):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        before = pool.images.clone()
        got = pool.query(new)
        if got.item() == new.item():
            assert torch.equal(pool.images, before)  # returned as is: the pool is unchanged
        else:
            swapped += 1
            # A stored image came back, and the new one took its place.
            slot = (before.flatten() == got.item()).nonzero().flatten()
            assert len(slot) == 1
            assert pool.images.flatten()[slot].item() == new.item()
            assert (pool.images != before).sum() == 1
    assert 0.45 < swapped / trials < 0.55


def test_pool_within_one_batch_and_disabled_pool():
    torch.manual_seed(1)
    pool = HistoryPool(3)
    batch = torch.arange(8.0).view(8, 1, 1, 1)
    out = pool.query(batch)
    # The first three fill the pool and come back unchanged; the rest are new or stored ones.
    assert torch.equal(out[:3], batch[:3])
    assert out.shape == batch.shape
    assert set(out.flatten().tolist()) <= set(range(8))

    off = HistoryPool(0)
    x = torch.randn(4, 1, 2, 2)
    assert off.query(x) is x
    assert off.state_dict()["images"] is None


def test_pool_state_round_trip_continues_identically():
    torch.manual_seed(2)
    pool = HistoryPool(4)
    pool.query(torch.randn(6, 1, 2, 2))
    restored = HistoryPool(4)
    restored.load_state_dict(pool.state_dict())
    assert restored.count == 4 and torch.equal(restored.images, pool.images)
    state = torch.get_rng_state()
    x = torch.randn(10, 1, 2, 2)
    torch.set_rng_state(state)
    expected = pool.query(x)
    torch.set_rng_state(state)
    torch.testing.assert_close(restored.query(x), expected)


def test_pool_size_error():
    with pytest.raises(ConfigError, match="pool_size=-1"):
        make_module(pool_size=-1)


# ------------------------------------------------------------------- training step
def test_step_updates_both_generators_and_both_discriminators_d_frozen_in_g_phase(monkeypatch):
    torch.manual_seed(0)
    model = make_module()
    before = {name: params(net) for name, net in _nets(model).items()}
    seen: list[dict[str, bool]] = []
    original = CycleGAN.backward_and_step

    def spy(self, optimizer, loss, *, counts_as_step):
        g_before, d_before = params(self.generator), params(self.discriminator)
        d_grad = [p.requires_grad for p in self.discriminator.parameters()]
        out = original(self, optimizer, loss, counts_as_step=counts_as_step)
        seen.append(
            {
                "g_phase": counts_as_step,
                "g_changed": changed(g_before, self.generator),
                "d_changed": changed(d_before, self.discriminator),
                "d_trainable": all(d_grad),
            }
        )
        return out

    monkeypatch.setattr(CycleGAN, "backward_and_step", spy)
    trainer = fit(model, Pairs(), steps=1)
    assert trainer.global_step == 1
    # The reference's order: G (D frozen), then D (G untouched).
    assert seen == [
        {"g_phase": True, "g_changed": True, "d_changed": False, "d_trainable": False},
        {"g_phase": False, "g_changed": False, "d_changed": True, "d_trainable": True},
    ]
    for name, net in _nets(model).items():
        assert changed(before[name], net), name
    assert int(model.d_updates) == 1
    logs = model.last_step_logs
    for key in ("d_loss", "g_loss", "g_cycle", "g_identity", "g_adv", "d_a", "d_b"):
        assert f"train/{key}" in logs
    torch.testing.assert_close(
        logs["train/g_loss"], logs["train/g_adv"] + logs["train/g_cycle"] + logs["train/g_identity"]
    )
    torch.testing.assert_close(logs["train/d_loss"], logs["train/d_a"] + logs["train/d_b"])


def _nets(model: CycleGAN) -> dict[str, nn.Module]:
    return {
        "G": model.generator.a_to_b,
        "F": model.generator.b_to_a,
        "D_A": model.discriminator.d_a,
        "D_B": model.discriminator.d_b,
    }


def test_discriminators_train_on_the_pooled_fakes(monkeypatch):
    torch.manual_seed(0)
    model = make_module()
    marker_a, marker_b = torch.full((2, 1, SIZE, SIZE), 0.25), torch.full((2, 1, SIZE, SIZE), -0.75)
    queried: dict[str, Tensor] = {}

    def fake_query(name: str, marker: Tensor):
        def query(images: Tensor) -> Tensor:
            queried[name] = images
            return marker

        return query

    monkeypatch.setattr(model.pool_a, "query", fake_query("a", marker_a))
    monkeypatch.setattr(model.pool_b, "query", fake_query("b", marker_b))
    received: list[tuple[Tensor, ...]] = []
    original = CycleGAN.discriminator_losses

    def spy(self, a, b, fake_a, fake_b):
        received.append((a, b, fake_a, fake_b))
        return original(self, a, b, fake_a, fake_b)

    monkeypatch.setattr(CycleGAN, "discriminator_losses", spy)
    data = Pairs()
    fit(model, data, steps=1)
    a, b, fake_a, fake_b = received[0]
    assert fake_a is marker_a and fake_b is marker_b
    # The pools were given this step's fakes: F(b) for D_A, G(a) for D_B, detached.
    assert not queried["a"].requires_grad and not queried["b"].requires_grad
    assert queried["a"].shape == b.shape and queried["b"].shape == a.shape


class ForgetsPools(CycleGAN):
    """A CycleGAN that does not restore its pools from checkpoints."""

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        AdversarialModule.on_load_checkpoint(self, checkpoint)


def _run(steps: int, ckpt: str | None = None, cls: type[CycleGAN] = CycleGAN) -> CycleGAN:
    torch.manual_seed(0)
    model = make_module(pool_size=2, cls=cls)
    torch.manual_seed(1)
    # One batch per epoch, so the resumed run sees the batches the uninterrupted one sees
    # (mid-epoch data order is the datamodule's business). The pools are full after the first
    # step and draw from then on.
    fit(model, Pairs(n=2, batch_size=2), steps=steps, ckpt_path=ckpt)
    return model


def test_pools_in_checkpoints_and_exact_resume(tmp_path):
    full = _run(4)
    half = _run(2)
    path = tmp_path / "half.ckpt"
    half.trainer.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    pools = ckpt["history_pools"]
    assert pools["a"]["count"] == 2 and pools["b"]["images"].shape == (2, 1, SIZE, SIZE)
    torch.testing.assert_close(pools["b"]["images"], half.pool_b.images)

    resumed = _run(4, ckpt=str(path))
    assert torch.equal(resumed.pool_a.images, full.pool_a.images)
    for name, net in _nets(full).items():
        for (key, p), q in zip(net.named_parameters(), _nets(resumed)[name].parameters(), strict=True):
            assert torch.equal(p, q), f"{name}.{key}"

    # The pools matter: resuming without them changes D's trajectory (the equality is not vacuous).
    forgetful = _run(4, ckpt=str(path), cls=ForgetsPools)
    assert forgetful.pool_a.count == 2  # refilled from empty
    assert any(
        not torch.equal(p, q)
        for p, q in zip(full.discriminator.parameters(), forgetful.discriminator.parameters(), strict=True)
    )


# ------------------------------------------------------------------ inference, grids
def test_translate_runs_eval_mode_without_grad_and_restores_mode():
    model = make_module(TranslationPair(Affine(2.0, 0.0), Affine(0.5, 0.0)))
    a = images()
    out = model.translate(a)
    assert not out.requires_grad
    torch.testing.assert_close(out, 2 * a)
    torch.testing.assert_close(model.translate_back(a), 0.5 * a)
    assert model.generator.training


def test_grid_layout_rows_a_g_of_a_f_of_g_of_a_and_b_to_a_grid():
    # Grey A, RGB B: A images are repeated to 3 channels beside the RGB ones (identity off).
    g, f = Affine(2.0, 0.0, c_in=1, c_out=3), Affine(1.0, 0.5, c_in=3, c_out=1)
    model = make_module(
        TranslationPair(g, f),
        DiscriminatorPair(patchgan(1), patchgan(3)),
        identity_weight=0.0,
        num_fixed_samples=3,
    )
    a, b = images(3, 1, seed=6), images(3, 3, seed=7)
    model.set_fixed_batch(a, b)
    grid, nrow = model.grid_samples()
    assert nrow == 3 and grid.shape == (9, 3, SIZE, SIZE)
    fake_b = 2 * a.expand(-1, 3, -1, -1)
    rec_a = fake_b.mean(1, keepdim=True) + 0.5
    for i in range(3):
        torch.testing.assert_close(grid[3 * i], a[i].expand(3, -1, -1))
        torch.testing.assert_close(grid[3 * i + 1], fake_b[i])
        torch.testing.assert_close(grid[3 * i + 2], rec_a[i].expand(3, -1, -1))
    extra = model.extra_grids()
    assert set(extra) == {"b_to_a"}
    grid_b, nrow_b = extra["b_to_a"]
    fake_a = b.mean(1, keepdim=True) + 0.5
    assert nrow_b == 3 and grid_b.shape == (9, 3, SIZE, SIZE)
    torch.testing.assert_close(grid_b[0], b[0])
    torch.testing.assert_close(grid_b[1], fake_a[0].expand(3, -1, -1))
    torch.testing.assert_close(grid_b[2], 2 * fake_a[0].expand(3, -1, -1))


def test_fixed_batch_taken_at_fit_start_and_samples_for_evaluation():
    torch.manual_seed(0)
    model = make_module(num_fixed_samples=3)
    data = Pairs(n=4, batch_size=2)
    rng = torch.get_rng_state()
    fit(model, data, steps=1)
    assert torch.equal(model.fixed_a, data.a[:3]) and torch.equal(model.fixed_b, data.b[:3])
    # (input, output, target); more than the 4 validation pairs: repeated.
    inputs, samples, targets = model.sample_for_evaluation(6)
    assert samples.shape == (6, 1, SIZE, SIZE)
    torch.testing.assert_close(inputs, torch.cat([data.a, data.a[:2]]))
    torch.testing.assert_close(targets, torch.cat([data.b, data.b[:2]]))
    torch.testing.assert_close(samples[4:], samples[:2])
    torch.testing.assert_close(samples[:4], model.translate(data.a))
    assert rng.shape == torch.get_rng_state().shape


# -------------------------------------------------------------------------- errors
def test_network_errors():
    with pytest.raises(ConfigError, match="TranslationPair"):
        make_module(generator=resnet())
    with pytest.raises(ConfigError, match="DiscriminatorPair"):
        make_module(discriminator=patchgan())
    with pytest.raises(ConfigError, match=r"d_a judges domain-A.*input_channels=1"):
        make_module(discriminator=DiscriminatorPair(patchgan(3), patchgan(1)))
    with pytest.raises(ConfigError, match="b_to_a must map"):
        TranslationPair(resnet(1, 3), resnet(1, 3))


def test_identity_needs_equal_domains_and_n_critic_one():
    pair = TranslationPair(resnet(1, 3), resnet(3, 1))
    discs = DiscriminatorPair(patchgan(1), patchgan(3))
    with pytest.raises(ConfigError, match="identity_weight=0"):
        make_module(pair, discs)
    assert make_module(pair, discs, identity_weight=0.0).generator is pair
    with pytest.raises(ConfigError, match="n_critic=2"):
        make_module(schedule=Schedule(n_critic=2))
    with pytest.raises(ConfigError, match="cycle_weight"):
        make_module(cycle_weight=-1.0)


def test_check_data_errors(make_cfg):
    from gan_research.data.digits import DigitsDataModule

    model = make_module()
    with pytest.raises(ConfigError, match=r"CycleGAN learns from paired .* or unpaired .*'digits' is images"):
        model.check_data(DigitsDataModule(image_size=SIZE))
    with pytest.raises(ConfigError, match="has domains A"):
        model.check_data(Pairs(channels_b=3))
    model.check_data(Pairs())


# ------------------------------------------------------------------ experiments
TINY_CYCLEGAN = [
    "model.generator.a_to_b.ngf=4",
    "model.generator.a_to_b.n_blocks=1",
    "model.discriminator.d_a.ndf=4",
]


def test_experiment_composes_and_runs_a_few_steps(make_cfg):
    cfg = make_cfg(
        "experiment=cyclegan_digits_inverted",
        *TINY_CYCLEGAN,
        "schedule.max_steps=3",
        "metrics=none",
        "threads=1",
    )
    assert cfg.model.generator.b_to_a.ngf == 4 and cfg.model.discriminator.d_b.ndf == 4
    result = train(cfg)
    assert result["status"] == "finished" and result["trainer"].global_step == 3
    run_dir: Path = result["run_dir"]
    assert (run_dir / "samples" / "step_0000003.png").is_file()
    assert (run_dir / "samples" / "b_to_a" / "step_0000003.png").is_file()
    records = read_records(run_dir / "metrics.jsonl")
    assert any("train/g_cycle" in r for r in records)


# A training run that must learn (hundreds of steps): `make test-all`, not `make test` (its
# mechanics, a step, resume, grids, gan-eval, are the contract test's).
@pytest.mark.slow
@pytest.mark.heavy
def test_digits_experiment_short_run_lowers_the_cycle_error(make_cfg):
    cfg = make_cfg(
        "experiment=cyclegan_digits_inverted",
        "model.generator.a_to_b.ngf=8",
        "model.generator.a_to_b.n_blocks=1",
        "model.discriminator.d_a.ndf=8",
        "dataset.batch_size=8",
        "schedule.max_steps=80",
        "metrics=translation",
        "metrics.every_n_steps=40",
        "metrics.feature_network=none",
        "callbacks.samples.every_n_steps=0",
        "callbacks.model_checkpoint.every_n_train_steps=0",
        "threads=1",
    )
    result = train(cfg)
    assert result["status"] == "finished"
    records = read_records(result["run_dir"] / "metrics.jsonl")
    evals = [r for r in records if "val/cycle_l1" in r and "status" not in r]
    # The untrained baseline (eval_at_start), then every 40 steps.
    assert [r["step"] for r in evals] == [0, 40, 80]
    first, last = evals[0], evals[-1]
    assert last["val/cycle_l1"] < 0.6 * first["val/cycle_l1"], (first, last)
    assert last["val/cycle_l1_b"] < 0.6 * first["val/cycle_l1_b"], (first, last)
    assert result["metrics"]["val/cycle_l1"] == pytest.approx(last["val/cycle_l1"])


def test_experiment_builds_with_the_translation_dataset(make_cfg):
    objs = build(make_cfg("experiment=cyclegan_digits_inverted", *TINY_CYCLEGAN, "metrics=none"))
    assert isinstance(objs["model"], CycleGAN)
    assert objs["datamodule"].name == "digits_inverted"


def test_horse2zebra_experiment_has_the_papers_settings(make_cfg, tmp_path):
    from PIL import Image

    root = tmp_path / "horse2zebra"
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 40), (60 * i, 100, 200)).save(root / folder / f"{i}.jpg")
    # tiny=False: the experiment's own schedule (the tiny overrides cut max_steps to 3).
    cfg = make_cfg("experiment=cyclegan_horse2zebra", f"dataset.root={root}", "metrics=none", tiny=False)
    assert cfg.dataset.root == str(root)
    assert (cfg.dataset.load_size, cfg.dataset.crop_size, cfg.dataset.batch_size, cfg.dataset.flip) == (
        286,
        256,
        1,
        True,
    )
    assert cfg.loss.adversarial._target_.endswith("LeastSquaresLoss")
    schedule = cfg.schedule
    assert (schedule.lr_g, schedule.lr_d, list(schedule.betas_g)) == (2e-4, 2e-4, [0.5, 0.999])
    # 100 + 100 reference epochs of max(1067, 1334) = 1334 iterations at batch 1.
    assert schedule.max_steps == 200 * 1334 and schedule.lr_decay == "linear"
    assert schedule.lr_decay_start == 0.5
    model = build(cfg)["model"]
    assert (model.cycle_weight, model.identity_weight, model.pool_a.size) == (10.0, 0.5, 50)
    g, f = model.generator.a_to_b, model.generator.b_to_a
    assert sum(p.numel() for p in g.parameters()) == sum(p.numel() for p in f.parameters()) == 11_378_179
    assert sum(p.numel() for p in model.discriminator.d_b.parameters()) == 2_764_737
    assert model.generator.input_shape == (3, 256, 256)


def test_paired_data_is_used_unpaired(make_cfg):
    # CycleGAN ignores the pairing: digits_edges (edge map -> digit) trains as two domains.
    result = train(make_cfg("model=cyclegan", "dataset=digits_edges", "schedule.max_steps=2", "threads=1"))
    assert result["status"] == "finished" and result["datamodule"].paired
    assert isinstance(result["model"], CycleGAN)
