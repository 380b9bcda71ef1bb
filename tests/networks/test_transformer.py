"""VQGAN's second stage (Esser et al. 2021, sec. 3.2, eqs. 8-10; minGPT as vendored in
taming-transformers): the causal mask, start-token conditioning, teacher forcing against sampling,
sampling with a seeded generator, greedy and top-k decoding, minGPT's initialisation and the config
errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_research.errors import ConfigError
from gan_research.networks.transformer import CodeTransformer

VOCAB, BLOCK = 11, 8


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these tiny matmuls 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kwargs) -> CodeTransformer:
    torch.manual_seed(0)
    options = {"vocab_size": VOCAB, "block_size": BLOCK, "n_layer": 2, "n_head": 2, "n_embd": 16, **kwargs}
    return CodeTransformer(**options)


def codes(batch: int = 2, length: int = BLOCK, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


# -- the causal mask and conditioning -----------------------------------------------------------
@pytest.mark.parametrize("t", [0, 3, BLOCK - 2])
def test_logits_up_to_t_do_not_see_codes_from_t_on(t: int) -> None:
    model = tiny().eval()
    idx = codes()
    changed = idx.clone()
    changed[:, t:] = (changed[:, t:] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(idx), model(changed)
    assert before.shape == (2, BLOCK, VOCAB)
    # Position t predicts idx[:, t] from the start token and idx[:, :t] only.
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1])
    # Position t + 1 sees idx[:, t]: the test is not vacuous.
    assert not torch.allclose(before[:, t + 1], after[:, t + 1])


def test_class_conditioning_changes_the_first_logits() -> None:
    model = tiny(n_classes=3).eval()
    idx = codes()
    with torch.no_grad():
        a = model(idx, torch.tensor([0, 0]))
        b = model(idx, torch.tensor([1, 1]))
        mixed = model(idx, torch.tensor([0, 1]))
    assert not torch.allclose(a[:, 0], b[:, 0])
    # Each sequence reads its own label.
    torch.testing.assert_close(mixed[0], a[0])
    torch.testing.assert_close(mixed[1], b[1])


def test_the_unconditional_start_token_is_learned_and_shared() -> None:
    model = tiny().eval()
    assert model.sos.weight.shape == (1, 16)
    with torch.no_grad():
        first = model(codes(3, 1))  # only the start token is seen
        assert torch.allclose(first[0], first[1]) and torch.allclose(first[1], first[2])
        model.sos.weight.add_(1.0)
        assert not torch.allclose(model(codes(3, 1)), first)


def test_conditioning_is_checked() -> None:
    with pytest.raises(ValueError, match="unconditional"):
        tiny()(codes(), torch.tensor([0, 1]))
    conditional = tiny(n_classes=3)
    with pytest.raises(ValueError, match="class-conditional"):
        conditional(codes())
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        conditional(codes(), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        conditional(codes(), torch.tensor([0, 1, 2]))


def test_sequences_longer_than_the_block_are_refused() -> None:
    with pytest.raises(ValueError, match="block_size=8"):
        tiny()(codes(1, BLOCK + 2))


# -- teacher forcing and sampling ---------------------------------------------------------------
def test_greedy_samples_are_the_argmax_of_the_teacher_forced_logits() -> None:
    for model, cond in ((tiny(), None), (tiny(n_classes=3), torch.tensor([2, 0, 1]))):
        model.eval()
        greedy = model.sample(3, BLOCK, cond=cond, top_k=1, generator=torch.Generator().manual_seed(5))
        assert greedy.shape == (3, BLOCK) and greedy.dtype == torch.int64
        with torch.no_grad():
            # The same forward that training uses ([sos, s[:-1]]) predicts each greedy choice.
            assert torch.equal(model(greedy, cond).argmax(-1), greedy)


def test_training_on_one_forward_memorises_a_sequence_per_class() -> None:
    model = tiny(n_classes=2)
    targets = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])
    labels = torch.tensor([0, 1])
    # Plain gradient descent: building a torch.optim optimiser first imports torch._dynamo (seconds).
    for _ in range(60):
        logits = model(targets, labels)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # eq. 10's -log p(s | c)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= 0.5 * parameter.grad
    assert loss.item() < 0.05
    sampled = model.sample(2, BLOCK, cond=labels, top_k=1)
    assert torch.equal(sampled, targets)


def test_sampling_is_reproducible_with_a_seeded_generator() -> None:
    model = tiny()
    first = model.sample(4, BLOCK, generator=torch.Generator().manual_seed(0))
    again = model.sample(4, BLOCK, generator=torch.Generator().manual_seed(0))
    other = model.sample(4, BLOCK, generator=torch.Generator().manual_seed(1))
    assert first.shape == (4, BLOCK) and first.min() >= 0 and first.max() < VOCAB
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert model.sample(2, 3).shape == (2, 3)  # fewer steps than the block


def test_sampling_runs_in_eval_mode_and_restores_the_mode() -> None:
    model = tiny(embd_pdrop=0.5, resid_pdrop=0.5, attn_pdrop=0.5).train()
    # Dropout draws from the global generator; with it off, the global seed cannot matter.
    torch.manual_seed(1)
    a = model.sample(3, BLOCK, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    b = model.sample(3, BLOCK, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    model.sample(1, 2)
    assert not any(m.training for m in model.modules())


LOGITS = torch.tensor([0.0, 3.0, 1.0, 2.5, -1.0, 2.9, 0.5, 0.2, 0.1, 2.0, -2.0])
TOP3 = {1, 5, 3}


def fixed_logits_model() -> CodeTransformer:
    """A model whose logits are LOGITS at every position, whatever the input."""
    model = tiny()
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.zero_()
        model.ln_f.bias[0] = 1.0
        model.head.weight.zero_()
        model.head.weight[:, 0] = LOGITS
    return model


def test_top_k_restricts_samples_to_the_k_most_likely_codes() -> None:
    model = fixed_logits_model()
    with torch.no_grad():
        torch.testing.assert_close(model(codes()), LOGITS.expand(2, BLOCK, VOCAB))
    restricted = model.sample(64, BLOCK, top_k=3, generator=torch.Generator().manual_seed(0))
    assert set(restricted.unique().tolist()) == TOP3
    # Among the kept codes the frequencies follow the renormalised softmax.
    kept = torch.softmax(LOGITS[[1, 5, 3]], 0)
    frequency = torch.tensor([(restricted == k).float().mean().item() for k in (1, 5, 3)])
    torch.testing.assert_close(frequency, kept, rtol=0, atol=0.08)
    free = model.sample(64, BLOCK, generator=torch.Generator().manual_seed(0))
    assert not set(free.unique().tolist()) <= TOP3  # without top_k other codes are drawn
    assert torch.equal(model.sample(4, BLOCK, top_k=1), torch.full((4, BLOCK), 1))


def test_temperature_sharpens_towards_the_argmax() -> None:
    model = fixed_logits_model()
    cold = model.sample(16, BLOCK, temperature=1e-3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cold, torch.full((16, BLOCK), 1))


def test_sample_arguments_are_checked() -> None:
    model = tiny()
    with pytest.raises(ValueError, match="block_size"):
        model.sample(1, BLOCK + 1)
    with pytest.raises(ValueError, match="top_k"):
        model.sample(1, 2, top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        model.sample(1, 2, top_k=VOCAB + 1)
    with pytest.raises(ConfigError, match="temperature"):
        model.sample(1, 2, temperature=0.0)


# -- initialisation and config ------------------------------------------------------------------
def test_weights_are_initialised_as_mingpt() -> None:
    model = tiny(n_embd=64, n_classes=4)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * 6 + 1  # per block key, query, value, proj, two MLP layers; the head
    for layer in linears:
        assert abs(layer.weight.std().item() - 0.02) < 0.002 and abs(layer.weight.mean().item()) < 0.002
        assert layer.bias is None or torch.count_nonzero(layer.bias) == 0
    assert model.head.bias is None
    for embedding in (model.tok_emb, model.sos):
        assert abs(embedding.weight.std().item() - 0.02) < 0.006
    for norm in (m for m in model.modules() if isinstance(m, nn.LayerNorm)):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert torch.count_nonzero(model.pos_emb) == 0 and model.pos_emb.shape == (1, BLOCK, 64)


def test_n_embd_not_divisible_by_n_head_is_a_config_error_listing_valid_heads() -> None:
    with pytest.raises(ConfigError) as info:
        tiny(n_embd=30, n_head=4)
    message = str(info.value)
    assert "n_embd=30" in message and "n_head=4" in message
    assert "[1, 2, 3, 5, 6, 10, 15, 30]" in message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"vocab_size": 0}, "vocab_size must be a positive integer"),
        ({"block_size": True}, "block_size"),
        ({"n_layer": 0}, "n_layer"),
        ({"attn_pdrop": 1.0}, "attn_pdrop must be a number in [0, 1)"),
        ({"n_classes": 0}, "n_classes must be a positive integer"),
    ],
)
def test_bad_settings_are_config_errors(change, needle) -> None:
    with pytest.raises(ConfigError) as info:
        tiny(**change)
    assert needle in str(info.value)
