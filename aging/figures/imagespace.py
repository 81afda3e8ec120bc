"""The image-space table (with a generator): are the aged faces the same person, and do they look
their age? ``tables/imagespace.{csv,md}``.

For the subject of the videos (Figs 3.1/3.2 and 5.1/5.2) and each of their two predictions
(two-point interpolation and the best model of the models table, both from the first photo),
every photo age is decoded and scored as ``aging score`` scores a folder: dlib's face descriptor
distance to the real face at that age (the aligned photo nearest in age with ``--photos``, else
the subject's decoded latent) and to the first photo, and apparent ages. A completion record
(``imagespace.json``, beside the videos' records) keeps a re-run from decoding again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aging import io
from aging.figures.common import FiguresOptions, write_table
from aging.figures.generated import Decoder, best_internal, pick_subject, two_point

NAME = "imagespace"
COLUMNS = ["prediction", "model_run", "pairs", "face_rate", "same_person_rate", "mean_identity_distance",
           "mean_source_distance", "age_mae_generated", "age_mae_real"]


def _real_faces(dec: Decoder, s, scorer) -> list:
    """The real face of each photo age as :class:`~aging.score.pairing.Scored`."""
    from aging.score.pairing import Scored, nearest_real

    if dec.photos is None:
        return [Scored(int(a), f"latent {int(a)}", scorer.analyse(f)) for f, a in zip(dec.frames(s.latents), s.ages)]
    idx = nearest_real(dec.photos.ages, s.ages)
    faces = {i: scorer.analyse(io.read_image(dec.photos.paths[i])) for i in sorted(set(idx.tolist()))}
    return [Scored(dec.photos.ages[i], dec.photos.paths[i].name, faces[i]) for i in idx]


def _key(dec: Decoder, s, ws: dict[str, np.ndarray]) -> str:
    from aging.score.faces import age_estimator_name

    real = [[p.name, io.file_stat(p)["bytes"]] for p in dec.photos.paths] if dec.photos is not None else None
    return io.digest({"generator": dec.digest, "size": dec.size, "real": real, "ages": age_estimator_name(),
                      "ws": {k: io.sha256_arrays(v, np.asarray(s.ages)) for k, v in ws.items()}})


def make_imagespace_table(ds, out: Path, runs: Path, opts: FiguresOptions, dec: Decoder, models_table: dict) -> dict:
    """Score the decoded predictions of the videos' subject; write and return the table."""
    from aging.models import load_model
    from aging.score.faces import FaceScorer
    from aging.score.options import ScoreOptions
    from aging.score.pairing import Scored
    from aging.score.pipeline import finish

    s = pick_subject(ds, opts)
    best = best_internal(models_table)
    ws = {"interpolation": two_point(s.latents, s.ages, s.ages),
          best["model"]: load_model(runs / best["run"]).predict(s.latents[0], s.ages[0], s.ages)}
    record = out / f"{NAME}.json"
    key = _key(dec, s, ws)
    if io.is_finished(record, key):
        rows = io.read_json(record)["rows"]
    else:
        scorer = FaceScorer()
        real = _real_faces(dec, s, scorer)
        rows = []
        for name, latents in ws.items():
            generated = [Scored(int(a), f"{name} {int(a)}", scorer.analyse(f))
                         for f, a in zip(dec.frames(latents), s.ages)]
            summary = finish(generated, real, real[0], ScoreOptions())[1]
            rows.append({"prediction": name, "model_run": best["run"] if name == best["model"] else "",
                         **{c: summary[c] for c in COLUMNS[2:]}})
    table = write_table(out, NAME, rows, COLUMNS)
    if not io.is_finished(record, key):
        io.write_record(record, key, [f"tables/{NAME}.csv", f"tables/{NAME}.md"], rows=rows, subject=s.name)
    return table
