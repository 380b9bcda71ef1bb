"""``python -m gan_research.metrics.classifier``: the ``gan-classifier`` command."""

from gan_research.metrics.classifier.cli import main

if __name__ == "__main__":
    main()
