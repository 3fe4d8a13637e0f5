"""The lake report's sections about the selection methods: PreSelect, ZIP, the mixture plan and
Grad-Mimic (the page itself: jobs/report.py)."""

from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import functions as F

from jobs.core.config import ConfigError, declared_models
from jobs.report_data import ReportContext
from jobs.report_html import Section, fmt, histogram_png, image, paragraph, table


def preselect_section(ctx: ReportContext) -> Section:
    section = Section("preselect", "PreSelect")
    try:
        models = [(m.model_id, m.benchmark_score, m.path) for m in declared_models(ctx.cfg)]
        section.body.append(table(["model", "benchmark score", "path"], models))
    except ConfigError as exc:
        section.body.append(paragraph(f"No reference models: {exc}"))
    if "predictive_strength" in ctx.tables:
        for hist in ctx.histograms.get("predictive_strength", []):
            section.body.append(image(histogram_png(hist.column, hist.edges, hist.counts), "ps"))
    else:
        section.body.append(paragraph("No `predictive_strength` table yet; "
                                      "`siftlake predictive_strength` makes it."))
    metadata = Path(ctx.cfg.preselect.model_dir) / "metadata.json"
    if metadata.is_file():
        meta = json.loads(metadata.read_text(encoding="utf-8"))
        holdout, counts = meta.get("holdout", {}), meta.get("counts", {})
        held_out = sum(counts.get("holdout", {}).values())
        section.body.append(table(
            ["classifier", "trained on", "held out", "held-out accuracy", "held-out AUC"],
            [(str(metadata), counts.get("total", 0) - held_out, held_out,
              holdout.get("accuracy", "n/a") if held_out else "n/a (nothing held out)",
              holdout.get("auc") if held_out else "n/a")]))
    else:
        section.body.append(paragraph(f"No classifier at {metadata}; `siftlake train_classifier` "
                                      "makes it."))
    return section


def zip_section(ctx: ReportContext) -> Section:
    from jobs.zip_select import selection_ratio_report

    section = Section("zip", "ZIP")
    if ctx.missing(section, "zip_selection", ctx.cfg.zip.source_table):
        return section
    selection = ctx.read("zip_selection")
    stages = [tuple(r) for r in selection.groupBy("stage").agg(
        F.countDistinct("doc_id"), F.countDistinct("group")).orderBy("stage").collect()]
    section.body = [table(["stage", "documents", "groups"], stages)]
    z = ctx.cfg.zip
    if not ctx.cfg.report.zip_ratio:
        section.body.append(paragraph("Compression ratios not computed (report.zip_ratio: false)."))
        return section
    ratio = selection_ratio_report(
        ctx.read(z.source_table), selection, z.seed, backend=z.backend, zstd_level=z.zstd_level,
        serialization=z.serialization, n_groups=z.n_groups, group_column=z.group_column)
    section.body += [paragraph("Compression ratio (raw / compressed bytes; lower = more diverse) "
                               "of the selection against a random subset of the same size."),
                     table(["", "documents", "raw bytes", "ratio"], [
                         ("ZIP selection", ratio["selected_docs"], ratio["selected_raw_bytes"],
                          ratio["selected_ratio"]),
                         ("random subset", ratio["random_docs"], ratio["random_raw_bytes"],
                          ratio["random_ratio"])]),
                     paragraph(f"ratio reduction vs random: {fmt(ratio['ratio_reduction'])}")]
    return section


def mixture_section(ctx: ReportContext) -> Section:
    section = Section("mixture", "Mixture plan")
    if ctx.missing(section, "mixture_plan"):
        return section
    plan = ctx.read("mixture_plan").orderBy(F.col("rank").asc_nulls_last(), "quality_bucket")
    columns = ["quality_bucket", "size", "rank", "b", "tau", "selected", "repeat_factor",
               "predicted_error_top_k", "note"]
    section.body = [table(columns, [tuple(r) for r in plan.select(*columns).collect()])]
    for name in ("error_vs_compute.png", "decayed_utility.png"):
        path = Path(ctx.cfg.lake.artifacts) / "mixture" / name
        if path.is_file():
            section.pngs[name] = path.read_bytes()
            section.body.append(image(section.pngs[name], name, wide=True))
        else:
            section.body.append(paragraph(f"No {path}; `siftlake mixture` draws it."))
    return section


def mimic_section(ctx: ReportContext) -> Section:
    section = Section("mimic", "Grad-Mimic votes")
    if ctx.missing(section, "mimic_aggregate"):
        return section
    votes = (ctx.read("mimic_aggregate").groupBy("n_checkpoints", "mimic_votes", "mimic_keep")
             .count().orderBy("n_checkpoints", "mimic_votes").collect())
    section.body = [table(["checkpoints", "votes", "kept", "documents"], [tuple(r) for r in votes])]
    section.body += [image(histogram_png(h.column, h.edges, h.counts), h.column)
                     for h in ctx.histograms.get("mimic_aggregate", [])]
    return section
