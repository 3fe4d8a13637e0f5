"""`siftlake <job> --config local --set key=value ...` (also the spark-submit entry).

An error the user can fix (a missing table, model or input, a config mistake, a refused fit) is
one line on stderr and exit status 2; `--log-level DEBUG` adds its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import traceback

from jobs.core.config_files import config_text, describe_keys, load_config, packaged_config_names
from jobs.core.errors import UserError
from jobs.core.registry import JOB_SPECS, job_runner

USER_ERROR_STATUS = 2
COMMON_USAGE = "[--config NAME|PATH] [--set KEY=VALUE ...] [--log-level LEVEL]"


def build_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in JOB_SPECS)
    listing = "\n".join(f"  {name:<{width}}  {spec.summary}" for name, spec in JOB_SPECS.items())
    parser = argparse.ArgumentParser(
        prog="siftlake", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"siftlake JOB {COMMON_USAGE}\n       siftlake init-config NAME\n"
              "       siftlake JOB --help",
        description="Score, bucket and select LLM training data into Delta tables.",
        epilog=f"jobs:\n{listing}\n\ninit-config NAME  print a packaged config "
               f"({', '.join(packaged_config_names())}) to start your own from",
    )
    parser.add_argument("-h", "--help", action="store_true", help="this help, or a job's")
    parser.add_argument("job", nargs="?", choices=list(JOB_SPECS), metavar="JOB", help="job to run")
    parser.add_argument(
        "--config", "-c", default=None,
        help="a packaged config by name (local, cluster, databricks) or a YAML file's path; "
             "default: the built-in defaults, the same as `local`",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set bucketize.n_buckets=5 (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG also prints tracebacks")
    return parser


def job_help(name: str) -> str:
    """What the job reads and writes and every config key it uses, with its default."""
    spec = JOB_SPECS[name]
    lines = [f"usage: siftlake {name} {COMMON_USAGE}", "", f"{name}: {spec.summary}", "",
             f"reads:  {spec.reads}", f"writes: {spec.writes}", "",
             "config keys (default), besides spark.* and lake.*:"]
    for key in spec.keys:
        for dotted, default, description in describe_keys(key):
            lines.append(f"  {dotted} = {default}")
            if description:
                lines += textwrap.wrap(description, 96, initial_indent=" " * 6,
                                       subsequent_indent=" " * 6)
    if name == "pipeline":
        lines.append("  ... and the keys of each step (siftlake STEP --help)")
    return "\n".join(lines)


def init_config(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="siftlake init-config",
        description="Print a packaged config, with its comments, to start your own from: "
                    "siftlake init-config cluster > my.yaml",
    )
    parser.add_argument("name", choices=packaged_config_names())
    args = parser.parse_args(argv)
    source, text = config_text(args.name)
    print(f"# Started from siftlake's {source}; run with --config <this file>.\n{text}", end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["init-config"]:
        return init_config(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.help:
        print(job_help(args.job) if args.job else parser.format_help())
        return 0
    if args.job is None:
        parser.error("name a JOB (siftlake --help lists them)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        from jobs.core.base import spark_stage
        from jobs.core.session import build_session

        spark = build_session(
            cfg.spark.master,
            cfg.spark.app_name,
            cfg.spark.conf,
            cfg.spark.delta_extensions,
            cfg.spark.preload_fasttext,
        )
        with spark_stage(spark, f"siftlake {args.job}"):
            report = job_runner(args.job)(spark, cfg)
    except UserError as exc:
        if args.log_level.upper() == "DEBUG":
            traceback.print_exc()
        print(f"siftlake {args.job}: {exc.one_line()}", file=sys.stderr)
        return USER_ERROR_STATUS
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
