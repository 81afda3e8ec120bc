"""``aging score``: generated faces against the real photos of the same person.

Reads two folders of ``<age_days>.png|jpg`` (a subject folder of ``aging fetch`` through its
manifest, :func:`aging.photos.subject_photos`), pairs each generated image with the real photo
nearest in age and writes, under ``out``::

    scores.csv     one row per generated image (aging.score.pairing.CSV_COLUMNS)
    scores.json    the summary (pairs, face_rate, same_person_rate, mean_identity_distance,
                   age_mae_generated, age_mae_real, ...)
    scores.png     identity distance and apparent age over age, real and generated
    options.json   the options of the run
    finished.json  the completion record, written last

A re-run with the same inputs (by content) and options writes nothing. What a real photo shows
(its descriptor and apparent age) is cached by the photo's content under ``$AGING_CACHE/faces``,
so scoring many generated sets against one subject analyses its photos once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from aging import io
from aging.errors import AgingError
from aging.photos import SubjectPhotos, subject_photos
from aging.progress import progress_bar
from aging.score.faces import FaceScore, FaceScorer, age_estimator_name, distance
from aging.score.options import ScoreOptions
from aging.score.pairing import CSV_COLUMNS, Scored, nearest_real, score_rows, summarise

VERSION = 1
OUTPUTS = ("scores.csv", "scores.json", "scores.png", "options.json")
RECORD = "finished.json"
NO_AGES_NOTE = "apparent ages not estimated: pip install aging[eval]"


class ScoreError(AgingError, ValueError):
    """Bad input of ``aging score`` (one line naming the folder or file)."""


@dataclass
class ScoreResult:
    """What a scoring run did."""

    summary: dict
    rows: list[dict]
    out: Path | None = None
    skipped: bool = False  # finished before with the same inputs and options: nothing written


# ---------------------------------------------------------------------------------------------
# What each image shows


def cache_folder(options: ScoreOptions) -> Path:
    from aging.stylegan.weights import cache_dir

    return Path(options.cache) if options.cache is not None else cache_dir() / "faces"


class PhotoFaces:
    """What real photos show, cached by content (``<cache>/<sha256[:2]>/<sha256>-<settings>.json``);
    a photo is read and analysed only on a cache miss."""

    def __init__(self, scorer: FaceScorer, folder: Path):
        self.scorer = scorer
        self.folder = folder
        self.settings = io.digest({"version": VERSION, "detect_size": scorer.detect_size,
                                   "ages": age_estimator_name() if scorer.estimates_age else None})[:12]

    def __call__(self, path: Path) -> FaceScore:
        sha = io.sha256_file(path)
        entry = self.folder / sha[:2] / f"{sha}-{self.settings}.json"
        rec = io.read_json(entry, default=None)
        if isinstance(rec, dict):
            try:
                return FaceScore.from_json(rec)
            except (KeyError, TypeError, ValueError):
                pass  # a damaged entry: analysed again
        face = self.scorer.analyse(io.read_image(path))
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            io.write_json(entry, face.to_json())
        except OSError:
            pass  # a read-only cache only costs time
        return face


_WORKER: dict = {}


def _start_worker(ages: bool, detect_size: int) -> None:
    """A worker process's scorer, its models loaded before the first image comes."""
    from aging.score.faces import age_model, dlib_models

    _WORKER["scorer"] = FaceScorer(ages=ages, detect_size=detect_size)
    dlib_models()
    if ages:
        age_model()


def _analyse_file(path: Path) -> FaceScore:
    return _WORKER["scorer"].analyse(io.read_image(path))


def analyse_files(paths: list[Path], scorer: FaceScorer, *, workers: int = 1, bar=None) -> list[FaceScore]:
    """What each image file shows, in order; with ``workers > 1`` (and enough files) in that many
    processes (spawned: no state of this process is shared)."""
    if workers <= 1 or len(paths) < 4 * workers:
        out = []
        for p in paths:
            out.append(scorer.analyse(io.read_image(p)))
            if bar is not None:
                bar.update(1)
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    out = []
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                             initargs=(scorer.ages, scorer.detect_size)) as pool:
        for face in pool.map(_analyse_file, paths, chunksize=4):
            out.append(face)
            if bar is not None:
                bar.update(1)
    return out


# ---------------------------------------------------------------------------------------------
# Folders -> scores


@dataclass
class _Inputs:
    real: SubjectPhotos
    generated: SubjectPhotos
    real_dir: Path
    source: Path
    paired: np.ndarray  # [G] index into real, per generated image


def _inputs(real_dir: Path, generated_dir: Path, options: ScoreOptions) -> _Inputs:
    """The two folders' photos and the source photo, checked (one line per mistake)."""
    real = subject_photos(real_dir)
    generated = subject_photos(generated_dir, skip_names=OUTPUTS + (RECORD,))
    source = Path(options.source) if options.source is not None else real.paths[0]
    if not source.is_file():
        raise ScoreError(f"--source {source}: no such image")
    return _Inputs(real, generated, real_dir, source, nearest_real(real.ages, generated.ages))


def _key(inp: _Inputs, options: ScoreOptions) -> str:
    """The fingerprint of a run: options, the age estimator, and the content of every image used."""
    used = sorted(set(inp.paired.tolist()))
    return io.digest({
        "version": VERSION, "threshold": options.threshold, "detect_size": options.detect_size,
        "ages": age_estimator_name() if options.ages else None, "real_ages": inp.real.ages,
        "real": {str(inp.real.ages[i]): io.sha256_file(inp.real.paths[i]) for i in used},
        "source": [str(inp.source), io.sha256_file(inp.source)],
        "generated": [[a, p.name, io.sha256_file(p)] for a, p in zip(inp.generated.ages, inp.generated.paths)],
    })


def _label(path: Path, folder: Path) -> str:
    """``path`` as scores.csv names it: relative to ``folder`` when inside it."""
    rel = os.path.relpath(path, folder)
    return str(path) if rel.startswith("..") else rel


def score_folders(real_dir: str | os.PathLike, generated_dir: str | os.PathLike, out: str | os.PathLike,
                  options: ScoreOptions = ScoreOptions()) -> ScoreResult:
    """Score every image of ``generated_dir`` against the real photo of ``real_dir`` nearest in age
    and write ``out/scores.{csv,json,png}`` (see the module docstring)."""
    real_dir, generated_dir, out = Path(real_dir), Path(generated_dir), Path(out)
    if out.exists() and not out.is_dir():
        raise ScoreError(f"-o {out}: not a folder")
    inp = _inputs(real_dir, generated_dir, options)
    key = _key(inp, options)
    if io.is_finished(out / RECORD, key):
        summary = io.read_json(out / "scores.json", default={})
        return ScoreResult(summary=summary, rows=[], out=out, skipped=True)
    scorer = FaceScorer(ages=options.ages, detect_size=options.detect_size)
    photo_faces = PhotoFaces(scorer, cache_folder(options))
    used = sorted(set(inp.paired.tolist()))
    with progress_bar(total=len(used) + 1 + len(inp.generated), desc="score", unit="img",
                      quiet=options.quiet) as bar:
        # first: a damaged generated image fails before the cache grows
        found = analyse_files(inp.generated.paths, scorer, workers=options.workers, bar=bar)
        generated = [Scored(age, _label(path, generated_dir), face)
                     for age, path, face in zip(inp.generated.ages, inp.generated.paths, found)]
        real_faces = {}
        for i in used:
            real_faces[i] = photo_faces(inp.real.paths[i])
            bar.update(1)
        source = Scored(_age_of(inp.source), _label(inp.source, real_dir), photo_faces(inp.source))
        bar.update(1)
    paired = [Scored(inp.real.ages[i], _label(inp.real.paths[i], real_dir), real_faces[i]) for i in inp.paired]
    rows, summary = finish(generated, paired, source, options)
    summary.update(real=str(real_dir), generated=str(generated_dir))
    out.mkdir(parents=True, exist_ok=True)
    write_scores(out, rows, summary, _real_to_source(paired, source), options)
    io.write_record(out / RECORD, key, OUTPUTS)
    return ScoreResult(summary=summary, rows=rows, out=out)


def _age_of(path: Path) -> int | None:
    return int(path.stem) if path.stem.isdigit() else None


def _real_to_source(paired: Iterable[Scored], source: Scored) -> list[tuple[int, float]]:
    """``(age_days, distance to the source)`` of each distinct real photo with a face."""
    out = {}
    for real in paired:
        d = distance(real.face.descriptor, source.face.descriptor)
        if d is not None:
            out[real.age_days] = round(d, 4)
    return sorted(out.items())


def finish(generated: list[Scored], paired: list[Scored], source: Scored,
           options: ScoreOptions) -> tuple[list[dict], dict]:
    """``(rows, summary)`` of scored images and their real photos; the summary names the age
    estimator, or says how to get one."""
    rows = score_rows(generated, paired, source, threshold=options.threshold)
    summary = summarise(rows, paired, source, threshold=options.threshold)
    estimator = age_estimator_name() if options.ages else None
    summary["age_estimator"] = estimator
    if options.ages and estimator is None:
        summary["note"] = NO_AGES_NOTE
    return rows, summary


def write_scores(out: Path, rows: list[dict], summary: dict, real_to_source: list[tuple[int, float]],
                 options: ScoreOptions) -> None:
    """``scores.csv`` (empty cells where nothing was computed), ``scores.json``, ``scores.png``
    and ``options.json`` under ``out``."""
    from aging.score.charts import plot_scores

    table = [{k: ("" if r[k] is None else str(r[k]).lower() if isinstance(r[k], bool) else r[k])
              for k in CSV_COLUMNS} for r in rows]
    io.write_csv(out / "scores.csv", table, CSV_COLUMNS)
    io.write_json(out / "scores.json", summary)
    plot_scores(rows, real_to_source, out / "scores.png", threshold=options.threshold,
                title=f"{summary.get('generated', 'generated')} against {summary.get('real', 'real')}")
    io.write_json(out / "options.json", asdict(replace(options, quiet=False)), only_if_changed=True)


# ---------------------------------------------------------------------------------------------
# Frames scored as they are drawn (aging render --score)


class FrameScores:
    """Scores frames one by one (``add``) against a subject's real photos (``summary``), as
    ``aging render --score`` draws them; nothing is written."""

    def __init__(self, real: SubjectPhotos, options: ScoreOptions = ScoreOptions()):
        self.real = real
        self.options = options
        self.scorer = FaceScorer(ages=options.ages, detect_size=options.detect_size)
        self.generated: list[Scored] = []

    def add(self, age_days: int, frame: np.ndarray, name: str = "") -> FaceScore:
        """Analyse one generated frame (uint8 RGB) of target age ``age_days``."""
        face = self.scorer.analyse(frame)
        self.generated.append(Scored(int(age_days), name or f"frame {len(self.generated)}", face))
        return face

    def summary(self, source: Path | None = None) -> dict:
        """The summary of ``scores.json`` for the frames added so far."""
        photo_faces = PhotoFaces(self.scorer, cache_folder(self.options))
        folder = self.real.source
        idx = nearest_real(self.real.ages, [g.age_days for g in self.generated])
        faces = {i: photo_faces(self.real.paths[i]) for i in sorted(set(idx.tolist()))}
        paired = [Scored(self.real.ages[i], _label(self.real.paths[i], folder), faces[i]) for i in idx]
        src = Path(source) if source is not None else self.real.paths[0]
        source_scored = Scored(_age_of(src), _label(src, folder), photo_faces(src))
        return finish(self.generated, paired, source_scored, self.options)[1]
