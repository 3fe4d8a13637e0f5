"""Demo builders: an offline corpus, reference models and training curves, so the chain runs anywhere."""
