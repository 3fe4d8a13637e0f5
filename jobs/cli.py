"""`siftlake <job> --config conf/local.yaml --set key=value ...` (also the spark-submit entry)."""

from __future__ import annotations

import argparse
import logging
import sys

from jobs.core.config import ConfigError, load_config
from jobs.core.registry import JOBS, job_runner


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="siftlake", description="Score, bucket and select LLM training data into Delta tables."
    )
    parser.add_argument("job", choices=sorted(JOBS), help="job to run")
    parser.add_argument("--config", "-c", default=None, help="YAML config (default: built-ins)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set bucketize.n_buckets=5 (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return 2
    from jobs.core.base import spark_stage
    from jobs.core.session import build_session

    spark = build_session(
        cfg.spark.master,
        cfg.spark.app_name,
        cfg.spark.conf,
        cfg.spark.delta_extensions,
        cfg.spark.preload_fasttext,
    )
    try:
        with spark_stage(spark, f"siftlake {args.job}"):
            report = job_runner(args.job)(spark, cfg)
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
