from __future__ import annotations

import base64
import io
import json
import logging
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from jobs import bucketize, ingest, prefilter, report, score
from jobs.core.base import spark_stage
from jobs.core.config import load_config
from jobs.core.lake import Lake
from jobs.core.progress import progress
from jobs.demo import corpus
from jobs.report_html import samples, table

CONF = Path(__file__).resolve().parents[2] / "conf" / "local.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DOC_MARKUP = "<script>alert('planted in a document')</script>"
RAW_MARKUP = "<script>alert('planted in a raw line')</script>"


class Page(HTMLParser):
    """Tags, text and images of each <section id=...> of the report."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.sections: dict[str, dict] = {}
        self._current: dict | None = None
        self._in_missing = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self._current = self.sections.setdefault(
                attrs["id"], {"text": [], "images": [], "missing": []})
        elif self._current is not None and tag == "img":
            self._current["images"].append(attrs["src"])
        self._in_missing = attrs.get("class") == "missing"

    def handle_data(self, data):
        if self._current is not None:
            self._current["text"].append(data)
            if self._in_missing:
                self._current["missing"].append(data)

    def text(self, section: str) -> str:
        return "".join(self.sections[section]["text"])


def decode_png(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix):], validate=True)
    assert data[:8] == PNG_SIGNATURE
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
    return image


def test_builders_escape_every_value_from_the_data():
    html = table(["<b>header</b>"], [[DOC_MARKUP], [3]]) + samples([RAW_MARKUP])
    parsed = Page(f"<section id='s'>{html}</section>")
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert DOC_MARKUP in parsed.text("s") and RAW_MARKUP in parsed.text("s")


def test_progress_logs_plain_lines_off_a_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="siftlake"):
        assert list(progress(range(100), "counting")) == list(range(100))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("counting")]
    assert len(lines) == 10 and lines[-1].startswith("counting: 100/100 done")


def test_spark_stage_labels_jobs_and_restores_the_enclosing_label(spark):
    context = spark.sparkContext
    with spark_stage(spark, "outer"):
        with spark_stage(spark, "inner"):
            assert context.getLocalProperty("spark.job.description") == "inner"
        assert context.getLocalProperty("spark.job.description") == "outer"
    assert context.getLocalProperty("spark.job.description") is None


def small_corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    cfg = load_config(CONF, [
        f"demo.corpus_dir={folder}", "demo.n_docstring_docs=80", "demo.n_boilerplate_docs=20",
        "demo.n_near_duplicate_docs=20", "demo.n_junk_docs=10", "demo.n_files=1",
    ])
    corpus.run(None, cfg)
    planted = [
        json.dumps({"id": "planted-doc", "text": f"{DOC_MARKUP} too short to pass",
                    "source": "planted"}),
        '{"id": "planted-raw", "text": "' + RAW_MARKUP,  # malformed JSON: quarantined raw
    ]
    (folder / "planted.jsonl").write_text("\n".join(planted) + "\n")
    return folder


def test_report_sections_follow_the_tables_and_escape_planted_markup(spark, tmp_path):
    folder = small_corpus(tmp_path)
    cfg = load_config(CONF, [
        f"lake.root={tmp_path / 'lake'}", f"lake.artifacts={tmp_path / 'artifacts'}",
        f"ingest.paths=['{folder}/*.jsonl']", "bucketize.n_buckets=3",
        # every failed document is an example, so the planted one is shown
        "report.examples_per_reason=1000", "report.histogram_bins=10",
    ])
    ingest.run(spark, cfg)
    first = report.run(spark, cfg)
    index = Path(first.tables["report"])
    assert index == tmp_path / "artifacts" / "report" / "index.html"
    page = Page(index.read_text(encoding="utf-8"))
    assert "script" not in page.tags and "link" not in page.tags
    assert RAW_MARKUP in page.text("quarantine")  # shown as text, truncated raw line
    assert "documents" in page.text("tables") and "prefilter" not in page.text("tables")
    for section, job in [("prefilter", "prefilter"), ("buckets", "bucketize"),
                         ("zip", "zip_select"), ("mixture", "mixture"),
                         ("mimic", "mimic_aggregate")]:
        assert f"siftlake {job}" in "".join(page.sections[section]["missing"]), section
    assert not page.sections["funnel"]["missing"] and not page.sections["quarantine"]["missing"]

    prefilter.run(spark, cfg)
    score.run(spark, cfg)
    bucketize.run(spark, cfg)
    second = report.run(spark, cfg)
    page = Page(index.read_text(encoding="utf-8"))
    assert "script" not in page.tags
    assert DOC_MARKUP in page.text("prefilter") and RAW_MARKUP in page.text("quarantine")
    lake = Lake(spark, cfg.lake.root)
    for name in ("curated", "prefilter", "scores"):
        assert f"{name}{lake.count(name):,}" in page.text("tables").replace("\n", "")
    for section in ("prefilter", "buckets", "histograms", "funnel"):
        assert not page.sections[section]["missing"], section
    assert "passed prefilter" in page.text("funnel") and "selected" in page.text("funnel")
    assert all(f"q0{i}" in page.text("buckets") for i in range(3))
    assert "zstd_ratio" in page.text("histograms")
    images = [src for s in page.sections.values() for src in s["images"]]
    # funnel, prefilter reasons, one histogram per numeric prefilter statistic and score column
    assert len(images) >= 20
    for src in images:
        assert decode_png(src).size[0] > 100
    written = sorted(p.name for p in index.parent.glob("*.png"))
    assert len(written) == second.details["images"] and "funnel.png" in written
    assert first.details["images"] < second.details["images"]

