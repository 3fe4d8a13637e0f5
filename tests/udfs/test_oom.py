"""The out-of-memory back-off: halves until each part fits, never loses or repeats an item.

torch.OutOfMemoryError is raised here by the scoring function itself (no GPU on CI), the way
torch raises it from a forward pass that does not fit.
"""

import pytest
import torch

from udfs.oom import run_halving_on_oom


def test_batch_that_fits_runs_once():
    seen = []
    assert run_halving_on_oom([1, 2, 3], seen.append, "advice") == 0
    assert seen == [[1, 2, 3]]


def test_oversized_batch_is_split_until_parts_fit_and_every_item_is_scored_once():
    scored = []

    def score(items):
        if len(items) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory")
        scored.extend(items)

    splits = run_halving_on_oom(list(range(10)), score, "advice")
    assert sorted(scored) == list(range(10)) and len(scored) == 10
    assert splits == 3  # 10 -> 5 + 5 -> (2 + 3) + (2 + 3)


def test_single_item_that_does_not_fit_raises_with_advice():
    def score(items):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError, match="lower the window"):
        run_halving_on_oom(["doc"], score, "lower the window")


def test_other_errors_are_not_retried():
    calls = []

    def score(items):
        calls.append(items)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        run_halving_on_oom([1, 2], score, "advice")
    assert calls == [[1, 2]]


def test_lm_loss_results_survive_a_split(model_dir, monkeypatch):
    """The real kernel, with its batches split by the back-off: the same numbers as unsplit."""
    import numpy as np

    from tests.lm_fixtures import synthetic_texts
    from udfs import lm_loss
    from udfs.lm_models import load_causal_lm

    lm = load_causal_lm(model_dir, device="cpu")
    texts = synthetic_texts(12, seed=3)
    whole = lm_loss.score_texts(texts, lm, stride=32, max_tokens_per_batch=4096)
    original, refused = lm_loss._score_batch, []

    def tight_memory(batch, *args):
        if len(batch) > 2:
            refused.append(len(batch))
            raise torch.OutOfMemoryError("CUDA out of memory")
        original(batch, *args)

    monkeypatch.setattr(lm_loss, "_score_batch", tight_memory)
    split = lm_loss.score_texts(texts, lm, stride=32, max_tokens_per_batch=4096)
    assert refused  # the back-off really ran
    np.testing.assert_allclose(split.total_nll, whole.total_nll, rtol=1e-6)
