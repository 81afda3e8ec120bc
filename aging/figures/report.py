"""The report: ``report.json`` (machine-readable), ``report.md`` and ``report.html`` (one file,
images embedded as data URIs, nothing it refers to outside itself). Each is written only when
its content changed, so a finished re-run writes nothing."""

from __future__ import annotations

import base64
import html
import platform
from pathlib import Path

from aging import io
from aging.figures.common import fmt, markdown_table

TABLE_TITLES = {"offset": "Offset regression (Figs 8-12)", "mlp": "MLP grid (Fig 14)",
                "models": "Every model on every split",
                "imagespace": "Image space: identity and apparent age of the generated faces"}


def dataset_summary(ds) -> dict:
    """Subjects, photos, age range and content hash of a latent dataset."""
    from aging.experiments import dataset_fingerprint

    fp = dataset_fingerprint(ds)
    return {"subjects": [{"name": s.name, "photos": len(s), "first_age_days": int(s.ages[0]),
                          "last_age_days": int(s.ages[-1])} for s in ds.subjects],
            "photos": int(ds.num_photos), "latent_shape": list(ds.latent_shape),
            "age_range_days": [int(min(s.ages[0] for s in ds.subjects)), int(max(s.ages[-1] for s in ds.subjects))],
            "content_sha256": fp["latents_sha256"], "synthetic": ds.clean_flat is not None}


def environment() -> dict:
    import numpy

    from aging import __version__

    return {"aging": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "platform": platform.platform(terse=True)}


def write_report(out: Path, report: dict) -> list[Path]:
    """``report.json``, ``report.md`` and ``report.html`` in ``out`` (each only when changed)."""
    io.write_json(out / "report.json", report, only_if_changed=True)
    io.write_if_changed(out / "report.md", report_markdown(report))
    io.write_if_changed(out / "report.html", report_html(out, report))
    return [out / "report.json", out / "report.md", out / "report.html"]


def _dataset_lines(report: dict) -> list[str]:
    d, nf = report["dataset"], report["noise_floor"]
    per = ", ".join(f"{k} {fmt(v)}" for k, v in nf["per_subject"].items())
    truth = "" if nf["truth"] is None else f" (known on this synthetic dataset: {fmt(nf['truth'])})"
    return [f"Dataset: {len(d['subjects'])} subject(s), {d['photos']} photos of shape {tuple(d['latent_shape'])}, "
            f"ages {d['age_range_days'][0]}-{d['age_range_days'][1]} days, content sha256 "
            f"`{d['content_sha256'][:16]}`.",
            f"Noise floor (estimated per-photo encoding noise, MSE per component): {fmt(nf['overall'])}{truth}; "
            f"per subject: {per}. Method: {nf['method']}.",
            f"Regenerate: `{report['command']}`. Environment: "
            + ", ".join(f"{k} {v}" for k, v in report["environment"].items())
            + f". Model fitting time of the runs: {report['timings']['fit_seconds']:.1f} s."]


def report_markdown(report: dict) -> str:
    lines = ["# The study's figures and tables", ""]
    for line in _dataset_lines(report):
        lines += [line, ""]
    for f in report["figures"]:
        show = f"[{f['file']}]({f['file']})" if f["file"].endswith(".mp4") else f"![Fig {f['study_figure']}]({f['file']})"
        lines += [f"## Fig {f['study_figure']}", "", show, "", f["caption"], ""]
    for name, t in report["tables"].items():
        lines += [f"## {TABLE_TITLES.get(name, name)}", "", f"`{t['csv']}`", "", markdown_table(t["rows"], t["columns"])]
        lines += [f"* skipped `{k}`: {v}" for k, v in t.get("skipped", {}).items()] + [""]
    return "\n".join(lines)


def _html_figure(out: Path, f: dict) -> str:
    """One figure: a PNG or GIF embedded as a data URI; an MP4 named only (no reference outside the
    file: it lies beside the report, and its GIF twin shows the same frames)."""
    e = html.escape
    head = f"<h2>Fig {e(f['study_figure'])}</h2><figure>"
    if f["file"].endswith(".mp4"):
        return head + f"<p>Video file <code>{e(f['file'])}</code> beside this report.</p>" \
                      f"<figcaption>{e(f['caption'])}</figcaption></figure>"
    kind = "gif" if f["file"].endswith(".gif") else "png"
    data = base64.b64encode((out / f["file"]).read_bytes()).decode("ascii")
    return head + f"<img alt='Fig {e(f['study_figure'])}' src='data:image/{kind};base64,{data}'>" \
                  f"<figcaption>{e(f['caption'])}</figcaption></figure>"


def report_html(out: Path, report: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>aging: the study's figures</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #bbb;padding:2px 6px}"
             "</style></head><body><h1>The study's figures and tables</h1>"]
    parts += [f"<p>{e(line).replace('`', '')}</p>" for line in _dataset_lines(report)]
    parts += [_html_figure(out, f) for f in report["figures"]]
    for name, t in report["tables"].items():
        parts.append(f"<h2>{e(TABLE_TITLES.get(name, name))}</h2><table><tr>"
                     + "".join(f"<th>{e(c)}</th>" for c in t["columns"]) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(fmt(r.get(c)))}</td>" for c in t["columns"]) + "</tr>" for r in t["rows"]]
        parts.append("</table>")
        parts += [f"<p>skipped {e(k)}: {e(v)}</p>" for k, v in t.get("skipped", {}).items()]
    return "".join(parts) + "</body></html>\n"
