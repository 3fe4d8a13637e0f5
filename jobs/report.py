"""report: one self-contained HTML page about the lake, `<lake.artifacts>/report/index.html`,
plus its plots as PNG files beside it.

Sections: the tables (rows, Delta version, last write), the funnel from input lines to the mixture,
quarantine and pre-filter reasons with examples, a histogram of every score column per source,
the quality buckets with their best- and worst-scored documents, PreSelect, ZIP, the mixture plan
and Grad-Mimic's votes. A section whose table does not exist yet says which job makes it.
Aggregates run in Spark (jobs/report_data.py); rendering and escaping live in jobs/report_html.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.base import QUARANTINE_TABLE, JobReport, lake_for, spark_stage
from jobs.core.config import Config
from jobs.core.progress import progress
from jobs.report_data import (
    MAKERS,
    ReportContext,
    clipped_text,
    first_per_key,
    hash_order,
    histograms,
    numeric_columns,
    table_overview,
    with_texts,
)
from jobs.report_html import (
    Section,
    bars_png,
    esc,
    figures,
    funnel_png,
    histogram_png,
    image,
    page,
    paragraph,
    samples,
    table,
)
from jobs.report_methods import mimic_section, mixture_section, preselect_section, zip_section

JOB = "report"
# Score columns per table (prefilter: every numeric statistic); histograms of `documents` columns.
SCORE_COLUMNS = {"scores": None, "predictive_strength": ["ps"], "mimic_aggregate": ["mimic_mean"]}
NOT_SCORES = ("n_bytes", "concordant_pairs", "n_models", "mimic_votes", "n_checkpoints")


def _tables(ctx: ReportContext) -> Section:
    section = Section("tables", "Tables")
    rows = table_overview(ctx.lake, sorted(ctx.tables))
    section.body = [paragraph(f"{len(rows)} Delta table(s) under {ctx.lake.root}"),
                    table(["table", "rows", "Delta version", "last write (UTC)", "operation"], rows)]
    return section


def _count_chars(df: DataFrame) -> tuple[int, int]:
    row = df.agg(F.count(F.lit(1)), F.sum("n_chars")).first()
    return int(row[0]), int(row[1] or 0)


def _funnel(ctx: ReportContext) -> Section:
    section = Section("funnel", "Funnel")
    if ctx.missing(section, "documents"):
        return section
    docs, chars = _count_chars(ctx.read("documents"))
    stages = []
    if QUARANTINE_TABLE in ctx.tables:
        bad = ctx.read(QUARANTINE_TABLE).where(F.col("job") == "ingest").count()
        stages.append(("input lines", docs + bad, None, f"{bad:,} quarantined by ingest"))
    stages.append(("documents", docs, chars, ""))
    if "prefilter" in ctx.tables:
        stages.append(("passed prefilter", *_count_chars(ctx.read("prefilter").where("passed")), ""))
    if "curated" in ctx.tables:
        curated = ctx.read("curated")
        chosen = F.col("selected")
        row = curated.agg(F.count(F.lit(1)), F.sum("n_chars"), F.count(F.when(chosen, 1)),
                          F.sum(F.when(chosen, F.col("n_chars")))).first()
        stages.append(("bucketized (curated)", int(row[0]), int(row[1] or 0), ""))
        stages.append(("selected", int(row[2]), int(row[3] or 0),
                       f"top {ctx.cfg.bucketize.keep_top_fraction:.0%} of characters"))
        if "mixture" in ctx.tables:
            mixed = ctx.read("mixture").join(curated.select("doc_id", "n_chars"), "doc_id")
            row = mixed.agg(F.count(F.lit(1)), F.sum("n_chars"), F.sum("repeats"),
                            F.sum(F.col("n_chars") * F.col("repeats"))).first()
            stages.append(("mixture", int(row[0]), int(row[1] or 0),
                           f"{int(row[2] or 0):,} samples, {int(row[3] or 0):,} characters seen"))
    png = funnel_png([(name, count) for name, count, _, _ in stages])
    section.pngs["funnel.png"] = png
    section.body = [table(["stage", "documents", "characters", "note"], stages),
                    image(png, "documents per stage")]
    return section


def _with_examples(ctx: ReportContext, rows: list[tuple], examples: list, key_width: int) -> list:
    """Each row plus the example blocks whose `key` equals the row's first `key_width` cells."""
    by_key: dict[tuple, list[str]] = {}
    for row in examples:
        by_key.setdefault(tuple(row["key"]), []).append(ctx.clip(row["snippet"], row["length"]))
    return [(*r, samples(by_key.get(tuple(r[:key_width]), []))) for r in rows]


def _quarantine(ctx: ReportContext) -> Section:
    section = Section("quarantine", "Quarantine reasons")
    if ctx.missing(section, QUARANTINE_TABLE):
        return section
    quarantine = ctx.read(QUARANTINE_TABLE)
    counts = [tuple(r) for r in quarantine.groupBy("job", "reason").count()
              .orderBy(F.desc("count"), "job", "reason").collect()]
    n = ctx.cfg.report.examples_per_reason
    picked = first_per_key(quarantine.select("job", "reason", "raw", "source"), ["job", "reason"],
                           F.xxhash64("raw", "source"), n)
    examples = picked.select(F.array("job", "reason").alias("key"),
                             *clipped_text("raw", ctx.cfg.report.sample_chars)).collect()
    section.body = [paragraph(f"{sum(c[2] for c in counts):,} quarantined row(s); examples are the "
                              "raw input, truncated."),
                    table(["job", "reason", "rows", "examples"],
                          _with_examples(ctx, counts, examples, 2), html_columns=[3])]
    return section


def _prefilter(ctx: ReportContext) -> Section:
    section = Section("prefilter", "Pre-filter reasons")
    if ctx.missing(section, "prefilter", "documents"):
        return section
    verdicts = ctx.read("prefilter")
    failed = verdicts.where(~F.col("passed"))
    counts = [tuple(r) for r in failed.groupBy("filter_reason")
              .agg(F.count(F.lit(1)).alias("n"), F.sum("n_chars"))
              .orderBy(F.desc("n"), "filter_reason").collect()]
    failing = dict(failed.select(F.explode("failed_rules").alias("rule")).groupBy("rule").count()
                   .collect())
    picked = first_per_key(failed.select("doc_id", "filter_reason"), "filter_reason",
                           hash_order(), ctx.cfg.report.examples_per_reason)
    examples = with_texts(picked, ctx.read("documents"), ctx.cfg.report.sample_chars).select(
        F.array("filter_reason").alias("key"), "snippet", "length").collect()
    rows = [(reason, docs, chars, failing.get(reason, 0)) for reason, docs, chars in counts]
    section.body = [paragraph("filter_reason is the first failed rule; a document can fail more "
                              "(the last column counts every document failing the rule)."),
                    table(["filter_reason", "documents", "characters", "fail the rule",
                           "examples"], _with_examples(ctx, rows, examples, 1), html_columns=[4])]
    if rows:
        png = bars_png("documents by first failed rule", [r[0] for r in rows],
                       [r[1] for r in rows], "documents")
        section.pngs["prefilter_reasons.png"] = png
        section.body.append(image(png, "documents by first failed rule"))
    return section


def _with_source(ctx: ReportContext, df: DataFrame) -> DataFrame:
    if "source" in df.columns or "documents" not in ctx.tables:
        return df
    return df.join(ctx.read("documents").select("doc_id", "source"), "doc_id", "left")


def _score_frames(ctx: ReportContext) -> dict[str, tuple[DataFrame, list[str]]]:
    frames = {}
    if "prefilter" in ctx.tables:
        df = ctx.read("prefilter")
        frames["prefilter"] = (df, numeric_columns(df))
    for name, columns in SCORE_COLUMNS.items():
        if name in ctx.tables:
            df = ctx.read(name)
            frames[name] = (df, columns or numeric_columns(df, ("n_chars", *NOT_SCORES)))
    if "model_losses" in ctx.tables:
        losses = ctx.read("model_losses")
        models = sorted(r[0] for r in losses.select("model_id").distinct().collect())
        wide = losses.groupBy("doc_id").pivot("model_id", models).agg(F.first("bpc"))
        wide = wide.select("doc_id", *[F.col(f"`{m}`").alias(f"bpc_{m}") for m in models])
        frames["model_losses"] = (wide, [f"bpc_{m}" for m in models])
    return frames


def _histograms(ctx: ReportContext) -> Section:
    section = Section("histograms", "Score histograms")
    frames = _score_frames(ctx)
    if not frames:
        return ctx.missing(section, "prefilter")
    settings = ctx.cfg.report
    for name, (df, columns) in frames.items():
        with spark_stage(ctx.spark, f"siftlake report: histograms of {name}"):
            ctx.histograms[name] = histograms(_with_source(ctx, df), columns, "source",
                                              settings.histogram_bins, settings.max_sources)
        items = []
        for hist in ctx.histograms[name]:
            png = histogram_png(hist.column, hist.edges, hist.counts)
            section.pngs[f"hist_{name}_{hist.column}.png"] = png
            items.append((png, f"{name}.{hist.column}"))
        section.body += [f"<h3>{esc(name)}</h3>", figures(items)]
    absent = [t for t in ("scores", "model_losses", "predictive_strength", "mimic_aggregate")
              if t not in ctx.tables]
    if absent:
        section.body.append(paragraph("Not shown yet: " + ", ".join(
            f"`{t}` (`siftlake {MAKERS.get(t, t)}`)" for t in absent)))
    section.body.insert(0, paragraph(f"Documents per bin, one line per source (the "
                                     f"{settings.max_sources} largest; the rest pooled)."))
    return section


def _buckets(ctx: ReportContext) -> Section:
    section = Section("buckets", "Quality buckets")
    if ctx.missing(section, "curated"):
        return section
    curated = ctx.read("curated")
    score = ctx.cfg.bucketize.score_column
    if score not in curated.columns:
        section.missing = f"`curated` has no column {score!r} (bucketize.score_column)"
        return section
    best_first = ctx.cfg.bucketize.direction == "higher_is_better"
    stats = (curated.groupBy("quality_bucket")
             .agg(F.count(F.lit(1)), F.sum("n_chars"), F.min(score), F.max(score))
             .orderBy("quality_bucket").collect())
    narrow = curated.select("doc_id", "quality_bucket", score)
    n = ctx.cfg.report.samples_per_bucket
    # Ties break by a hash of doc_id, reversed for the worst: tied buckets show different ends.
    best = [F.col(score).desc(), hash_order().asc()] if best_first else [
        F.col(score).asc(), hash_order().asc()]
    worst = [F.col(score).asc(), hash_order().desc()] if best_first else [
        F.col(score).desc(), hash_order().desc()]
    picked = (first_per_key(narrow, "quality_bucket", best, n).withColumn("end", F.lit("best"))
              .unionByName(first_per_key(narrow, "quality_bucket", worst, n)
                           .withColumn("end", F.lit("worst"))))
    texts = with_texts(picked, curated, ctx.cfg.report.sample_chars).orderBy(
        "quality_bucket", "end", "_rank").collect()
    section.body = [paragraph(f"Ranked by {score} ({ctx.cfg.bucketize.direction}); q00 is best. "
                              f"Samples: the {n} best- and {n} worst-scored documents of each.")]
    for row in stats:
        bucket = row[0]
        section.body.append(f"<h3>{esc(bucket)}</h3>" + table(
            ["documents", "characters", f"min {score}", f"max {score}"], [tuple(row[1:])]))
        for end in ("best", "worst"):
            chosen = [r for r in texts if r["quality_bucket"] == bucket and r["end"] == end]
            shown = [f"[{score} {r[score]:.4g}] {ctx.clip(r['snippet'], r['length'])}"
                     for r in chosen]
            section.body.append(paragraph(f"{end}-scored in {bucket}:") + samples(shown))
    return section


SECTIONS = [_tables, _funnel, _quarantine, _prefilter, _histograms, _buckets, preselect_section,
            zip_section, mixture_section, mimic_section]


def build_report(spark: SparkSession, cfg: Config) -> tuple[Path, list[Section]]:
    """Write index.html and the PNGs under `<lake.artifacts>/report/`; returns the page path."""
    lake = lake_for(spark, cfg)
    ctx = ReportContext(spark, cfg, lake, set(lake.table_names()))
    sections = []
    for make in progress(SECTIONS, "report: sections"):
        with spark_stage(spark, f"siftlake report: {make.__name__.strip('_')}"):
            sections.append(make(ctx))
    out = Path(cfg.lake.artifacts) / "report"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):  # the folder is the report's own: drop plots of a past run
        stale.unlink()
    for section in sections:
        for name, png in section.pngs.items():
            (out / name).write_bytes(png)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    html = page("siftlake report", f"lake {lake.root} · config {cfg.source} · {stamp}", sections)
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index, sections


def run(spark: SparkSession, cfg: Config) -> JobReport:
    index, sections = build_report(spark, cfg)
    missing = [s.title for s in sections if s.missing]
    return JobReport(JOB, 0, 0, tables={"report": str(index)}, details={
        "sections": len(sections) - len(missing),
        "not shown (tables missing)": ", ".join(missing) or "none",
        "images": sum(len(s.pngs) for s in sections)})
