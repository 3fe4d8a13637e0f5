"""SparkSession construction and Delta detection.

Python UDF throughput depends heavily on worker reuse (off was ~8x slower here), and the lake
reads partition folders without type inference so `model_id="1"` stays a string.

Python workers start with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (WORKER_ENV): glibc then backs
large allocations with transparent huge pages where the kernel allows it (THP `madvise` mode).
fastText's hashed n-gram table (800 MB with the recipe's 2M buckets) is read at random, and
huge pages cut its TLB misses: one process scored ~27K docs/s instead of 16-23K here. Other libcs
and older glibc ignore the variable. Override it with `spark.executorEnv.GLIBC_TUNABLES`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

from pyspark.sql import SparkSession

log = logging.getLogger("siftlake")

WORKER_ENV: dict[str, str] = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}

DEFAULT_CONF: dict[str, str] = {
    **{f"spark.executorEnv.{name}": value for name, value in WORKER_ENV.items()},
    "spark.python.worker.reuse": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "false",
}

# Read when the driver JVM starts: set in the YAML they only work where siftlake starts the JVM.
DRIVER_JVM_CONF = ("spark.driver.memory", "spark.driver.extraJavaOptions", "spark.driver.extraClassPath")

DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def preload_conf(fasttext_models: Sequence[str]) -> dict[str, str]:
    """Spark settings making each executor's Python daemon load these fastText models once.

    Workers fork from the daemon and share its copy (see udfs.preload_daemon). The paths must
    be readable on the executors when their first Python task starts.
    """
    if not fasttext_models:
        return {}
    from udfs.preload_daemon import PRELOAD_ENV

    paths = [os.path.abspath(p) if "://" not in p else p for p in fasttext_models]
    return {
        "spark.python.daemon.module": "udfs.preload_daemon",
        f"spark.executorEnv.{PRELOAD_ENV}": os.pathsep.join(paths),
    }


def session_conf(
    conf: Mapping[str, str] | None = None,
    use_delta_extensions: bool = False,
    preload_fasttext: Sequence[str] = (),
) -> dict[str, str]:
    """Every setting a siftlake session gets: DEFAULT_CONF, Delta, preloads, then the config's."""
    merged = dict(DEFAULT_CONF)
    if use_delta_extensions:
        merged.update(DELTA_CONF)
    merged.update(preload_conf(preload_fasttext))
    merged.update({k: str(v) for k, v in (conf or {}).items()})
    return merged


def build_session(
    master: str | None = "local[*]",
    app_name: str = "siftlake",
    conf: Mapping[str, str] | None = None,
    use_delta_extensions: bool = False,
    preload_fasttext: Sequence[str] = (),
) -> SparkSession:
    """Get or create the session. `master=None` keeps whatever spark-submit or Databricks set."""
    # Executors must run the same interpreter as the driver so pickled UDFs and the package match.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None:
        _, refused = apply_conf(active, conf or {})
        if refused:
            log.warning("the running session keeps its own value of %s", ", ".join(refused))
        return active
    merged = session_conf(conf, use_delta_extensions, preload_fasttext)
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        # spark-submit started the driver JVM before this process read the config.
        late = [k for k in merged if k in DRIVER_JVM_CONF]
        if late:
            log.warning("%s: no effect under spark-submit; pass them to spark-submit "
                        "(--driver-memory, --driver-java-options)", ", ".join(late))
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in merged.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def apply_conf(
    spark: SparkSession, conf: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Set what a running session (a notebook's, Databricks') can still change.

    Returns (applied, refused), each key -> wanted value. A setting already at the wanted value
    counts as applied; static and Spark-core settings (executor memory and environment, Python
    worker reuse, GPU amounts, SQL extensions) are refused: they belong in the cluster's Spark
    config. `spark.conf.set` would accept some of them (`spark.executorEnv.*`) without effect,
    so the test is `isModifiable`, not whether `set` raises.
    """
    applied: dict[str, str] = {}
    refused: dict[str, str] = {}
    for key, value in conf.items():
        value = str(value)
        if _current(spark, key) == value:
            applied[key] = value
        elif spark.conf.isModifiable(key):
            spark.conf.set(key, value)
            applied[key] = value
        else:
            refused[key] = value
    return applied, refused


def _current(spark: SparkSession, key: str) -> str | None:
    try:
        return spark.conf.get(key, None)
    except Exception:  # Spark Connect may refuse to read some settings
        return None


def session_has_delta(spark: SparkSession) -> bool:
    """True when `format("delta")` works: Databricks, or a session started with delta-spark jars."""
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:
        # Spark Connect (Databricks serverless / shared clusters) has no py4j gateway and ships Delta.
        return True
    try:
        jvm.java.lang.Class.forName(
            "org.apache.spark.sql.delta.sources.DeltaDataSource",
            True,
            jvm.Thread.currentThread().getContextClassLoader(),
        )
        return True
    except Exception:
        return False
