import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def spark():
    from jobs.core.session import build_session

    session = build_session(
        master="local[2]",
        app_name="siftlake-tests",
        conf={"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"},
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models run faster on one torch thread, and leave the other core to Spark."""
    from tests.lm_fixtures import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    """A tiny trained GPT-2 saved with save_pretrained, shared by the LM test modules."""
    from tests.lm_fixtures import tiny_lm_dir

    return tiny_lm_dir(tmp_path_factory, "gpt2")
