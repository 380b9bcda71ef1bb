"""VQGAN's second stage: a GPT-style transformer over the first stage's code indices (Esser, Rombach
& Ommer 2021, "Taming Transformers for High-Resolution Image Synthesis", arXiv:2012.09841, sec. 3.2).

An image's h×w code map, read in raster order, is a sequence s ∈ {0, …, K−1}^{h·w}; the transformer
models p(s) = Π_i p(s_i | s_<i) (eq. 8) and is trained on the log-likelihood L = E[−log p(s)]
(eq. 9); with a class c, p(s | c) = Π_i p(s_i | s_<i, c) (eq. 10).

The network follows minGPT as the reference code vendors it (CompVis/taming-transformers,
taming/modules/transformer/mingpt.py, ``GPT``), with its module names: token and learned positional
embeddings (``tok_emb``, ``pos_emb``, zeros at init), embedding dropout, ``n_layer`` pre-norm blocks
(LayerNorm → causal multi-head self-attention with separate ``key``/``query``/``value`` projections
and an output ``proj`` → residual; LayerNorm → Linear 4·n_embd → GELU → Linear → dropout → residual),
a final LayerNorm and a bias-free linear ``head`` to the vocabulary; Linear and Embedding weights
N(0, 0.02), biases 0, LayerNorm weight 1 and bias 0.

Conditioning is through the first position: the input is [sos, s_1, …, s_{T−1}] and the logits at
position t predict s_{t+1}'s distribution given sos and s_≤t. taming's ``Net2NetTransformer`` takes
its start token from the same embedding table as the codes (code 0 for unconditional models, the
class index for class-conditional ones, with ``vocab_size`` covering both); here the start tokens
have their own table, ``sos`` (one learned token, or one per class), so class c and code c never
share a vector. ``sample`` is taming's ``sample`` (mingpt.py) with ``sample=True``, a torch
``Generator`` for reproducibility, and the start token instead of a conditioning prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_fraction, check_positive_float, check_positive_int

__all__ = ["CausalSelfAttention", "CodeTransformer", "TransformerBlock", "gpt_weights_init"]


def gpt_weights_init(module: nn.Module) -> None:
    """minGPT's ``_init_weights``: Linear and Embedding weights N(0, 0.02), Linear biases 0,
    LayerNorm weight 1 and bias 0 (``pos_emb``, a bare Parameter, stays at its zeros)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends to positions ≤ t (minGPT's layer).

    The mask is ``scaled_dot_product_attention(is_causal=True)`` rather than minGPT's stored
    lower-triangular buffer: it selects the fused (flash / memory-efficient) kernels on GPUs, and no
    block_size × block_size mask sits in the module (or its checkpoints). The scores are the same,
    softmax(q kᵀ / √(n_embd / n_head)) with −∞ above the diagonal.
    """

    def __init__(self, n_embd: int, n_head: int, attn_pdrop: float, resid_pdrop: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.attn_pdrop = attn_pdrop
        self.key = nn.Linear(n_embd, n_embd)
        self.query = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)
        self.resid_drop = nn.Dropout(resid_pdrop)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape

        def heads(linear: nn.Linear) -> Tensor:
            return linear(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

        # Attention dropout as minGPT's attn_drop: on the attention weights, in training only.
        dropout = self.attn_pdrop if self.training else 0.0
        y = F.scaled_dot_product_attention(
            heads(self.query), heads(self.key), heads(self.value), dropout_p=dropout, is_causal=True
        )
        y = y.transpose(1, 2).reshape(b, t, c)
        return self.resid_drop(self.proj(y))


class TransformerBlock(nn.Module):
    """x + attn(ln1(x)), then x + mlp(ln2(x)): minGPT's ``Block``."""

    def __init__(self, n_embd: int, n_head: int, attn_pdrop: float, resid_pdrop: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, attn_pdrop, resid_pdrop)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(resid_pdrop),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CodeTransformer(nn.Module):
    """Autoregressive model of code sequences: idx (B, T) → logits (B, T, vocab_size).

    Args:
        vocab_size: the number of codes K (the first stage's ``n_embed``).
        block_size: the longest sequence, h·w of the first stage's latent map.
        n_layer, n_head, n_embd: depth, attention heads and width (n_embd divisible by n_head).
        embd_pdrop, resid_pdrop, attn_pdrop: minGPT's dropout rates (taming's GPT defaults: 0).
        n_classes: the number of classes for class-conditional models (a start token per class),
            or None for one learned start token.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int = 12,
        n_head: int = 8,
        n_embd: int = 256,
        embd_pdrop: float = 0.0,
        resid_pdrop: float = 0.0,
        attn_pdrop: float = 0.0,
        n_classes: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.vocab_size = check_positive_int(owner, "vocab_size", vocab_size)
        self.block_size = check_positive_int(owner, "block_size", block_size)
        n_layer = check_positive_int(owner, "n_layer", n_layer)
        n_head = check_positive_int(owner, "n_head", n_head)
        n_embd = check_positive_int(owner, "n_embd", n_embd)
        if n_embd % n_head != 0:
            divisors = [d for d in range(1, n_embd + 1) if n_embd % d == 0]
            raise ConfigError(
                f"{owner}: n_embd={n_embd} is not divisible by n_head={n_head}: each head takes "
                f"n_embd / n_head channels; valid n_head for n_embd={n_embd}: {divisors}"
            )
        embd_pdrop = check_fraction(owner, "embd_pdrop", embd_pdrop)
        resid_pdrop = check_fraction(owner, "resid_pdrop", resid_pdrop)
        attn_pdrop = check_fraction(owner, "attn_pdrop", attn_pdrop)
        if n_classes is not None:
            n_classes = check_positive_int(owner, "n_classes", n_classes)
        self.n_classes = n_classes
        self.n_embd = n_embd
        self.tok_emb = nn.Embedding(self.vocab_size, n_embd)
        # Row c: the start token of class c; one row, the shared start token, when unconditional.
        self.sos = nn.Embedding(n_classes or 1, n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, self.block_size, n_embd))
        self.drop = nn.Dropout(embd_pdrop)
        self.blocks = nn.Sequential(
            *(TransformerBlock(n_embd, n_head, attn_pdrop, resid_pdrop) for _ in range(n_layer))
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, self.vocab_size, bias=False)
        self.apply(gpt_weights_init)

    def _start_tokens(self, batch: int, cond: Tensor | None, device: torch.device) -> Tensor:
        """The (batch,) rows of ``sos`` for the first position, after checking ``cond``."""
        if self.n_classes is None:
            if cond is not None:
                raise ValueError("this CodeTransformer is unconditional (n_classes=None); pass cond=None")
            return torch.zeros(batch, dtype=torch.long, device=device)
        if cond is None:
            raise ValueError(
                f"this CodeTransformer is class-conditional (n_classes={self.n_classes}); pass cond"
            )
        if cond.shape != (batch,):
            raise ValueError(
                f"cond must hold one label per sequence, shape ({batch},), got {tuple(cond.shape)}"
            )
        if cond.numel() and (int(cond.min()) < 0 or int(cond.max()) >= self.n_classes):
            raise ValueError(
                f"cond labels must lie in [0, {self.n_classes - 1}], "
                f"got [{int(cond.min())}, {int(cond.max())}]"
            )
        return cond.long()

    def next_token_logits(self, prefix: Tensor, cond: Tensor | None = None) -> Tensor:
        """Logits (B, t + 1, vocab) of the input [sos, prefix]: position i predicts the (i+1)-th code.

        ``prefix`` (B, t) with 0 ≤ t < block_size; the last position is the distribution of the code
        after the prefix (what :meth:`sample` draws from).
        """
        if prefix.dim() != 2:
            raise ValueError(f"code indices must be (B, T), got shape {tuple(prefix.shape)}")
        b, t = prefix.shape
        if t + 1 > self.block_size:
            raise ValueError(
                f"a sequence of {t + 1} positions exceeds "
                f"block_size={self.block_size} (the first stage's h·w)"
            )
        start = self.sos(self._start_tokens(b, cond, prefix.device)).unsqueeze(1)  # (B, 1, C)
        tokens = torch.cat((start, self.tok_emb(prefix)), dim=1)
        x = self.drop(tokens + self.pos_emb[:, : t + 1])
        return self.head(self.ln_f(self.blocks(x)))

    def forward(self, idx: Tensor, cond: Tensor | None = None) -> Tensor:
        """Logits (B, T, vocab) where position t predicts idx[:, t] from the start token and idx[:, :t].

        One forward of [sos, idx[:, :-1]] trains every position: the training loss is
        ``F.cross_entropy(logits.flatten(0, 1), idx.flatten())`` (eq. 9, or eq. 10 with ``cond``).

        Args:
            idx: code indices (B, T), T ≤ block_size.
            cond: class labels (B,) for a class-conditional model, else None.
        """
        if idx.dim() != 2 or idx.shape[1] < 1:
            raise ValueError(f"code indices must be (B, T) with T >= 1, got shape {tuple(idx.shape)}")
        return self.next_token_logits(idx[:, :-1], cond)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int,
        cond: Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``n`` sequences of ``steps`` codes, one code at a time: (n, steps) int64.

        Each step draws from softmax(logits / temperature) of the last position, restricted to the
        ``top_k`` most likely codes when given (taming's ``top_k_logits``; ``top_k=1`` is greedy
        decoding). Runs in eval mode (no dropout) and restores the module's mode afterwards.

        Args:
            n: number of sequences.
            steps: codes per sequence, at most block_size.
            cond: (n,) class labels for a class-conditional model, else None.
            temperature: > 0; below 1 sharpens, above 1 flattens the distribution.
            top_k: keep only the k most likely codes at each step (1 ≤ k ≤ vocab_size), or None.
            generator: a torch.Generator on the model's device, for reproducible draws.
        """
        owner = f"{type(self).__name__}.sample"
        n = check_positive_int(owner, "n", n)
        steps = check_positive_int(owner, "steps", steps)
        temperature = check_positive_float(owner, "temperature", temperature)
        if steps > self.block_size:
            raise ValueError(f"steps={steps} exceeds block_size={self.block_size}")
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= self.vocab_size
        ):
            raise ValueError(f"top_k must be None or an integer in [1, {self.vocab_size}], got {top_k!r}")
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        try:
            codes = torch.empty(n, 0, dtype=torch.long, device=device)
            for _ in range(steps):
                # No key/value cache: each step reruns the prefix (quadratic, as taming's sample);
                # sequences are h·w ≤ a few hundred codes.
                logits = self.next_token_logits(codes, cond)[:, -1].float() / temperature
                if top_k is not None:
                    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)
                codes = torch.cat((codes, nxt), dim=1)
        finally:
            self.train(was_training)
        return codes
