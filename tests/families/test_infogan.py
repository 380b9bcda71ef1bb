"""InfoGAN: codes, the information term in both networks' losses, traversals, no labels."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from gan_research.errors import ConfigError
from gan_research.families.infogan import GRID_LATENTS, TRAVERSAL_STEPS, InfoGAN
from gan_research.train import build, train
from gan_research.utils.data_spec import DataKind, DataSpec

# Tiny InfoGAN on 16x16 digits: the paper's codes (one 10-way categorical, 2 continuous).
TINY_INFOGAN = (
    "model=infogan",
    "model.generator.ngf=8",
    "model.discriminator.ndf=8",
    "dataset.batch_size=8",
    "dataset.image_size=16",
)


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def fit(cfg, model, datamodule) -> None:
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)


@pytest.mark.parametrize("info_weight", [1.0, 0.0])
def test_step_updates_g_d_and_the_q_head_through_the_info_term(make_cfg, info_weight):
    cfg = make_cfg(*TINY_INFOGAN, f"model.info_weight={info_weight}", "schedule.max_steps=1")
    objs = build(cfg)
    model = objs["model"]
    assert isinstance(model, InfoGAN)
    g0, body0, head0 = (
        params(model.generator),
        params(model.discriminator.net),
        params(model.discriminator.head),
    )
    fit(cfg, model, objs["datamodule"])
    assert changed(g0, model.generator) and changed(body0, model.discriminator.net)
    # Q's head enters no loss but the information term: it learns exactly when λ > 0.
    assert changed(head0, model.discriminator.head) == (info_weight > 0)
    logs = model.last_step_logs
    for key in ("train/d_info", "train/g_info", "train/q_cat", "train/q_cont", "train/q_cat_acc"):
        assert key in logs, key
    if info_weight > 0:
        assert logs["train/d_info"] > 0 and logs["train/g_info"] > 0


def test_info_loss_is_cross_entropy_plus_weighted_gaussian_nll(make_cfg):
    model = build(make_cfg(*TINY_INFOGAN, "model.info_weight=0.5", "model.continuous_weight=0.1"))["model"]
    torch.manual_seed(0)
    code = model.draw_codes(6)
    q_out = torch.randn(6, model.q_outputs)
    loss, terms = model.info_loss(q_out, code)
    ce = torch.nn.functional.cross_entropy(q_out[:, :10], code[:, :10].argmax(1))
    mean, log_var, c = q_out[:, 10:12], q_out[:, 12:14], code[:, 10:]
    nll = -torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(c).sum(1).mean()
    assert terms["cat"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert terms["cont"].item() == pytest.approx(nll.item(), rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * (ce.item() + 0.1 * nll.item()), rel=1e-5)


def test_training_g_and_q_on_the_info_loss_alone_recovers_the_codes(make_cfg):
    """Lower bound of eq. 5: optimising only L_I, Q learns to read the categorical code from G(z, c)."""
    model = build(make_cfg(*TINY_INFOGAN))["model"]
    torch.manual_seed(0)
    opt = torch.optim.Adam([*model.generator.parameters(), *model.discriminator.parameters()], lr=2e-3)

    def info(n: int = 64) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        code = model.sample_condition(n)
        fake = model.generate_fake(model.sample_latent(n), code)
        return model.info_loss(model.discriminate(fake, None)[1], code)

    first, first_terms = info()
    for _ in range(40):
        loss, terms = info()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last, terms = info(256)
    assert last.item() < 0.5 * first.item()
    assert first_terms["acc"].item() < 0.3  # at chance (0.1) before training
    assert terms["acc"].item() > 0.3  # 3x chance: Q reads the code G was given


def test_traversal_grids_layout_and_codes(make_cfg, monkeypatch):
    model = build(make_cfg(*TINY_INFOGAN))["model"]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    generate = model.generate

    def record(z=None, n=None, condition=None):
        seen.append((z.clone(), condition.clone()))
        return generate(z, n, condition)

    monkeypatch.setattr(model, "generate", record)
    grids = model.extra_grids()
    assert list(grids) == ["traversal_cat0", "traversal_cont0", "traversal_cont1"]
    n, steps = GRID_LATENTS, TRAVERSAL_STEPS

    cat, nrow = grids["traversal_cat0"]
    assert cat.shape == (10 * n, 1, 16, 16) and nrow == n
    z, code = seen[0]
    # Row r: category r of code 0; column j: fixed latent j (noise and the other codes).
    assert torch.equal(code[:, :10].argmax(1).view(10, n), torch.arange(10)[:, None].expand(10, n))
    assert torch.equal(z.view(10, n, -1), model.fixed_noise[:n].expand(10, n, -1))
    assert torch.equal(code[:, 10:].view(10, n, 2), model.fixed_codes[:n, 10:].expand(10, n, 2))
    rows = cat.view(10, n, -1)
    for i in range(10):
        for j in range(i + 1, 10):
            assert not torch.allclose(rows[i], rows[j]), (i, j)

    for index in (0, 1):
        grid, nrow = grids[f"traversal_cont{index}"]
        assert grid.shape == (n * steps, 1, 16, 16) and nrow == steps
        z, code = seen[1 + index]
        # Row i: fixed latent i; columns: continuous code `index` from -2 to 2, other codes fixed.
        sweep = code[:, 10 + index].view(n, steps)
        assert torch.allclose(sweep, torch.linspace(-2, 2, steps).expand(n, steps))
        other = code[:, 10 + 1 - index].view(n, steps)
        assert torch.equal(other, model.fixed_codes[:n, 10 + 1 - index, None].expand(n, steps))
        assert torch.equal(z.view(n, steps, -1), model.fixed_noise[:n, None].expand(n, steps, -1))
        columns = grid.view(n, steps, -1)
        assert not torch.allclose(columns[:, 0], columns[:, -1])


def test_dataset_labels_are_never_used(make_cfg):
    cfg = make_cfg(*TINY_INFOGAN, "schedule.max_steps=2")
    runs = []
    for scramble in (False, True):
        objs = build(cfg)
        if scramble:
            labels = objs["datamodule"].train_set.y
            labels.copy_(labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))])
        fit(cfg, objs["model"], objs["datamodule"])
        runs.append(objs["model"])
    for name in ("generator", "discriminator"):
        a, b = params(getattr(runs[0], name)), params(getattr(runs[1], name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_unlabelled_datasets_are_accepted(make_cfg):
    model = build(make_cfg(*TINY_INFOGAN))["model"]
    spec = DataSpec("folder", DataKind.IMAGES, (1, 16, 16), num_classes=None, channels=1, image_size=16)
    model.check_data(SimpleNamespace(spec=spec))


def test_codes_follow_the_prior_and_are_drawn_per_process_from_the_global_batch(make_cfg):
    model = build(
        make_cfg(
            *TINY_INFOGAN,
            "model.categorical=[10,3]",
            "model.generator.code_dim=15",
            "model.discriminator.num_outputs=17",
        )
    )["model"]
    torch.manual_seed(0)
    codes = model.sample_condition(4000)
    assert codes.shape == (4000, 15)
    for block in (codes[:, :10], codes[:, 10:13]):
        assert torch.equal(block.sum(1), torch.ones(4000)) and set(block.unique().tolist()) == {0.0, 1.0}
        frequencies = block.mean(0)
        assert torch.allclose(frequencies, torch.full_like(frequencies, 1 / block.shape[1]), atol=0.03)
    cont = codes[:, 13:]
    assert cont.min() >= -1 and cont.max() <= 1 and cont.mean().abs() < 0.05

    # Process 1 of 2 with batch 4 takes the second half of the 8 codes one process would draw.
    torch.manual_seed(1)
    whole = model.sample_condition(8)
    model._trainer = SimpleNamespace(world_size=2, global_rank=1)
    torch.manual_seed(1)
    assert torch.equal(model.sample_condition(4), whole[4:])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.generator.code_dim=11", r"code_dim=11.*model.generator.code_dim=12"),
        ("model.discriminator.num_outputs=12", r"num_outputs=12.*model.discriminator.num_outputs=14"),
        ("model.categorical=[1]", r"model.categorical=\[1\]"),
        ("model.info_weight=-1", r"model.info_weight=-1"),
    ],
)
def test_config_errors_name_the_value(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        build(make_cfg(*TINY_INFOGAN, override))


def test_experiment_runs_and_saves_traversals(make_cfg):
    cfg = make_cfg(
        "experiment=infogan_digits",
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "dataset.batch_size=8",
        "dataset.image_size=16",
        "schedule.max_steps=2",
    )
    assert cfg.model.categorical == [10] and cfg.model.continuous == 2
    result = train(cfg)
    assert result["status"] == "finished" and result["trainer"].global_step == 2
    samples = result["run_dir"] / "samples"
    for name in ("traversal_cat0", "traversal_cont0", "traversal_cont1"):
        assert (samples / name / "step_0000002.png").is_file(), name
