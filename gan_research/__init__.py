"""gan_research: a configuration-driven research framework for Generative Adversarial Networks."""

__version__ = "0.1.0"
