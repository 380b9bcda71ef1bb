"""InfoGAN (Chen, Duan, Houthooft, Schulman, Sutskever & Abbeel 2016, arXiv:1606.03657).

G(z, c) takes noise z and a latent code c; nothing tells G what c means, but G and an
auxiliary network Q are rewarded when c can be read back from G(z, c): the mutual
information I(c; G(z, c)) is maximised through its variational lower bound (sec. 5, eq. 5)

    L_I(G, Q) = E_{c ~ P(c), x ~ G(z, c)}[log Q(c | x)] + H(c) <= I(c; G(z, c)),

and the game is min_{G,Q} max_D V(D, G) - λ L_I(G, Q) (eq. 6). H(c) is a constant of the
code prior, so both networks minimise ``info_weight`` × (-E[log Q(c | x)]) on FAKE samples,
added to their adversarial losses: in D's loss it trains Q's head and the body Q shares with
D (sec. 6: "Q and D share all convolutional layers"), in G's loss it trains G.

The code c (``sample_condition``) is, in this order:
- one categorical code per entry of ``categorical`` (its number of categories), uniform,
  given to G one-hot; Q outputs its logits and -log Q is the cross entropy;
- ``continuous`` codes ~ Uniform(-1, 1); Q outputs a factored Gaussian per code, its mean
  and log-variance (sec. 6: "we simply treat it as a factored Gaussian"), and -log Q is
  the Gaussian negative log-likelihood, 2π constant included.

So G's code input has ``sum(categorical) + continuous`` entries (``model.generator.code_dim``)
and Q's head ``sum(categorical) + 2 * continuous`` outputs (``model.discriminator.num_outputs``).
The paper weights the information term by λ = 1 for discrete codes and uses a smaller λ
when continuous codes are involved (sec. 6); ``continuous_weight`` scales the
continuous part inside the term: L = info_weight × (CE + continuous_weight × NLL).

InfoGAN is unsupervised: D sees images only, and the datamodule's labels (when it has
any) never enter training. Every code is drawn with ``draw_global``, so under DDP each
process takes its slice of the global batch's codes, as it does for the noise.
Label flips (``schedule.label_flip_prob``) move a few real images into D's fake batch,
where Q is then trained to read the codes of the fakes they replaced: leave it at 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.families.gan import GAN, LossTerms
from gan_research.utils.data_spec import DataKind
from gan_research.utils.validation import check_int_at_least

# Columns (categorical) / rows (continuous) of the traversal grids: one fixed (z, codes) each.
GRID_LATENTS = 8
# The continuous traversals sweep a code over [-2, 2], beyond its training range [-1, 1]
# (the paper's Fig. 2), in this many steps.
TRAVERSAL_RANGE = 2.0
TRAVERSAL_STEPS = 9
_LOG_2PI = math.log(2.0 * math.pi)


class InfoGAN(GAN):
    """InfoGAN: G(z, c) → image; D(x) → (score, Q's outputs) from one shared body.

    Args:
        categorical: number of categories of each categorical code (the paper's MNIST
            setting: one code of 10).
        continuous: number of Uniform(-1, 1) codes (2 in the paper's MNIST setting).
        info_weight: λ of eq. 6, the weight of the information term in both networks' losses.
        continuous_weight: weight of the continuous codes' NLL inside the information term,
            relative to the categorical cross entropy.
        sample_seed: seed of the fixed noise and of the fixed codes of the sample grids.
        **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    data_kinds = (DataKind.IMAGES, DataKind.STACKED)

    def __init__(
        self,
        *args: Any,
        categorical: list[int] | None = None,
        continuous: int = 2,
        info_weight: float = 1.0,
        continuous_weight: float = 1.0,
        sample_seed: int = 1234,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, sample_seed=sample_seed, **kwargs)
        categorical = [10] if categorical is None else list(categorical)
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in categorical):
            raise ConfigError(
                f"model.categorical={categorical!r} is invalid: expected a list of category counts, "
                "each an integer >= 2 (e.g. [10]; [] for none)"
            )
        check_int_at_least("model", "continuous", continuous, 0, form="override")
        if not categorical and continuous == 0:
            raise ConfigError(
                "InfoGAN needs at least one latent code: model.categorical=[] and model.continuous=0"
            )
        for key, value in (("info_weight", info_weight), ("continuous_weight", continuous_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"model.{key}={value!r} is invalid: expected a number >= 0")
        self.categorical = categorical
        self.continuous = continuous
        self.info_weight = float(info_weight)
        self.continuous_weight = float(continuous_weight)
        self.check_network_codes()
        gen = torch.Generator().manual_seed(sample_seed + 1)
        self.register_buffer("fixed_codes", self.draw_codes(self.fixed_noise.shape[0], generator=gen))

    @property
    def code_dim(self) -> int:
        """Length of G's code input: the one-hot categorical codes, then the continuous ones."""
        return sum(self.categorical) + self.continuous

    @property
    def q_outputs(self) -> int:
        """Length of Q's output: each categorical code's logits, then the continuous means and
        log-variances."""
        return sum(self.categorical) + 2 * self.continuous

    def check_network_codes(self) -> None:
        """G must take ``code_dim`` code inputs and D carry a Q head of ``q_outputs`` beside its score."""
        codes = f"categorical={self.categorical} and continuous={self.continuous}"
        have_g = getattr(self.generator, "code_dim", None)
        if have_g != self.code_dim:
            raise ConfigError(
                f"model.generator ({type(self.generator).__name__}) has code_dim={have_g!r}, but "
                f"{codes} need sum(categorical) + continuous = {self.code_dim}: set "
                f"model.generator.code_dim={self.code_dim} (a CodeDCGANGenerator)"
            )
        have_d = getattr(self.discriminator, "num_outputs", None)
        if have_d != self.q_outputs or getattr(self.discriminator, "adversarial_head", None) is not True:
            raise ConfigError(
                f"model.discriminator ({type(self.discriminator).__name__}) has num_outputs={have_d!r}, "
                f"but {codes} need a Q head of sum(categorical) + 2 * continuous = {self.q_outputs} "
                f"outputs beside the real/fake score: set model.discriminator.num_outputs={self.q_outputs} "
                "(an AuxiliaryDCGANDiscriminator with adversarial_head: true)"
            )

    # ------------------------------------------------------------------ codes
    def draw_codes(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        """``n`` code vectors from the prior P(c): one-hot uniform categories, then Uniform(-1, 1)."""
        parts = []
        for k in self.categorical:
            index = torch.randint(k, (n,), generator=generator)
            parts.append(F.one_hot(index, k).float())
        if self.continuous:
            parts.append(torch.rand(n, self.continuous, generator=generator) * 2.0 - 1.0)
        codes = torch.cat(parts, dim=1)
        return codes if device is None else codes.to(device)

    def split_code(self, code: Tensor) -> tuple[list[Tensor], Tensor]:
        """(the category index of each categorical code (B,), the continuous codes (B, continuous))."""
        indices, offset = [], 0
        for k in self.categorical:
            indices.append(code[:, offset : offset + k].argmax(dim=1))
            offset += k
        return indices, code[:, offset:]

    def info_terms(self, q_out: Tensor, code: Tensor) -> dict[str, Tensor]:
        """-E[log Q(c | x)] of each code kind, summed over codes, averaged over the batch.

        ``cat``: cross entropy of the categorical codes; ``cont``: Gaussian NLL of the
        continuous ones; ``acc``: Q's accuracy on the first categorical code (a diagnostic).
        """
        q_out = q_out.float()
        indices, cont = self.split_code(code.float())
        terms: dict[str, Tensor] = {}
        offset = 0
        cat = q_out.new_zeros(())
        for k, target in zip(self.categorical, indices, strict=True):
            logits = q_out[:, offset : offset + k]
            cat = cat + F.cross_entropy(logits, target)
            if "acc" not in terms:
                terms["acc"] = (logits.argmax(dim=1) == target).float().mean()
            offset += k
        terms["cat"] = cat
        c = self.continuous
        mean, log_var = q_out[:, offset : offset + c], q_out[:, offset + c : offset + 2 * c]
        nll = 0.5 * (_LOG_2PI + log_var + (cont - mean).pow(2) * torch.exp(-log_var))
        terms["cont"] = nll.sum(dim=1).mean() if c else q_out.new_zeros(())
        return terms

    def info_loss(self, q_out: Tensor, code: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """λ × (CE + continuous_weight × NLL): the negated lower bound of eq. 5 without H(c);
        and its parts."""
        terms = self.info_terms(q_out, code)
        loss = self.info_weight * (terms["cat"] + self.continuous_weight * terms["cont"])
        return loss, terms

    # ------------------------------------------------------------------ hooks
    def sample_condition(self, n: int) -> Tensor:
        return self.draw_global(n, lambda m: self.draw_codes(m, device=self.device))

    def generate_fake(self, z: Tensor, condition: Tensor) -> Tensor:
        return self.generator(z, condition)

    def discriminate(self, x: Tensor, condition: Any) -> tuple[Tensor, Tensor]:
        # D is unconditional; its second output is Q's head on the shared body.
        return self.discriminator(x)

    def discriminator_extra_losses(
        self, real_extra: Tensor, fake_extra: Tensor, real_condition: Any, fake_condition: Tensor
    ) -> LossTerms:
        """The information term on this D update's fakes (it trains Q's head and the shared body),
        with Q's diagnostics: ``train/q_cat`` (CE), ``train/q_cont`` (NLL), ``train/q_cat_acc``
        (Q reads the first categorical code; 1/K is chance)."""
        loss, terms = self.info_loss(fake_extra, fake_condition)
        logs = {f"train/q_{name}": value.detach() for name, value in terms.items()}
        if "train/q_acc" in logs:
            logs["train/q_cat_acc"] = logs.pop("train/q_acc")
        return LossTerms({"info": loss}, logs)

    def generator_extra_losses(self, fake: Tensor, fake_extra: Tensor, fake_condition: Tensor) -> LossTerms:
        return LossTerms({"info": self.info_loss(fake_extra, fake_condition)[0]})

    def discriminator_step(self, real: Tensor, opt_d: Any, labels: Tensor | None = None) -> dict[str, Tensor]:
        # Unsupervised: the dataset's labels are dropped here, so they cannot reach any hook.
        return super().discriminator_step(real, opt_d, None)

    # ------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(self, z: Tensor | None = None, n: int | None = None, condition: Any = None) -> Tensor:
        """As the base's, with codes drawn from the prior when ``condition`` is None."""
        if condition is None:
            m = z.shape[0] if z is not None else (n if n is not None else self.fixed_noise.shape[0])
            condition = self.sample_condition(m)
        return super().generate(z, n, condition)

    def grid_samples(self) -> tuple[Tensor, None]:
        return self.generate(self.fixed_noise, condition=self.fixed_codes), None

    def extra_grids(self) -> dict[str, tuple[Tensor, int]]:
        """Latent traversals (the paper's Fig. 2), from the first ``GRID_LATENTS`` fixed (z, c):

        - ``traversal_cat<i>``: a row per category of categorical code i, a column per fixed
          (z, other codes): ``categorical[i] * GRID_LATENTS`` images, rows of ``GRID_LATENTS``;
        - ``traversal_cont<j>``: a row per fixed (z, other codes), columns sweeping continuous
          code j over [-2, 2] in ``TRAVERSAL_STEPS`` steps: ``GRID_LATENTS * TRAVERSAL_STEPS``
          images, rows of ``TRAVERSAL_STEPS``.
        """
        n = min(GRID_LATENTS, self.fixed_noise.shape[0])
        z, codes = self.fixed_noise[:n], self.fixed_codes[:n]
        grids: dict[str, tuple[Tensor, int]] = {}
        offset = 0
        for i, k in enumerate(self.categorical):
            cat_codes = codes.repeat(k, 1)
            category = torch.arange(k, device=codes.device).repeat_interleave(n)
            cat_codes[:, offset : offset + k] = F.one_hot(category, k).to(codes.dtype)
            grids[f"traversal_cat{i}"] = (self.generate(z.repeat(k, 1), condition=cat_codes), n)
            offset += k
        values = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, TRAVERSAL_STEPS, device=codes.device)
        for j in range(self.continuous):
            cont_codes = codes.repeat_interleave(TRAVERSAL_STEPS, dim=0)
            cont_codes[:, offset + j] = values.repeat(n)
            z_rows = z.repeat_interleave(TRAVERSAL_STEPS, dim=0)
            grids[f"traversal_cont{j}"] = (self.generate(z_rows, condition=cont_codes), TRAVERSAL_STEPS)
        return grids

    def forward(self, z: Tensor, code: Tensor | None = None) -> Tensor:
        return self.generator(z, code if code is not None else self.sample_condition(z.shape[0]))
