"""Executors' Python daemon preloads the fastText model; forked workers use that one copy.

The daemon module is a static Spark setting, so this runs its own session in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import fasttext
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import pyarrow as pa
    from pyspark.sql.functions import arrow_udf
    from jobs.score import fasttext_model_ref
    from jobs.core.session import build_session
    from udfs.fasttext_score import make_fasttext_udf, model_load_count, model_loader_pid

    model, texts = sys.argv[1], json.loads(sys.argv[2])
    spark = build_session("local[2]", "preload-test", preload_fasttext=[model])
    ref = fasttext_model_ref(spark, model)

    @arrow_udf("string")
    def who_loaded(scores: pa.Array) -> pa.Array:
        facts = [os.getpid(), model_loader_pid(ref), model_load_count(ref)]
        return pa.array([json.dumps(facts)] * len(scores))

    score = make_fasttext_udf(ref)
    frame = spark.createDataFrame([(t,) for t in texts], "text string").repartition(4)
    rows = frame.select("text", score("text").alias("s"), who_loaded(score("text")).alias("w"))
    rows = rows.collect()
    print("RESULT " + json.dumps({
        "ref": ref,
        "scores": {r.text: r.s for r in rows},
        "facts": sorted({r.w for r in rows}),
    }))
    """
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("preload")
    train = folder / "train.txt"
    train.write_text("".join(
        f"__label__{i % 2} {'river meadow' if i % 2 else 'casino jackpot'} word{i % 7}\n"
        for i in range(200)
    ))
    model = fasttext.train_supervised(input=str(train), epoch=5, dim=8, bucket=1000, thread=1,
                                      verbose=0, seed=1)
    path = folder / "model.bin"
    model.save_model(str(path))
    return str(path)


def test_workers_share_the_daemons_copy_and_score_the_same(model_path):
    texts = [f"river meadow word{i}" if i % 2 else f"casino jackpot word{i}" for i in range(40)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", SCRIPT, model_path, json.dumps(texts)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["ref"] == os.path.abspath(model_path)  # no shipped copy: the daemon's path
    facts = [json.loads(f) for f in result["facts"]]
    loaders = {loader for _, loader, _ in facts}
    workers = {pid for pid, _, _ in facts}
    assert len(loaders) == 1 and not loaders & workers  # loaded once, by the parent daemon
    assert {count for _, _, count in facts} == {1}
    model = fasttext.load_model(model_path)
    for text, score in result["scores"].items():
        expected = {lab: p for p, lab in model.f.predict(text + "\n", -1, 0.0, "strict")}
        assert score == min(expected["__label__1"], 1.0)
