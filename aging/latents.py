"""Latent datasets: subjects -> (age_days, latent) sequences, pairing strategies and splits.

On disk a latent dataset is a directory with one folder per subject, each holding
``<age_days>.npy`` files (optionally under ``<subject>/latents/``), exactly the layout of the
original study's published latents. Inside the code every latent is kept in its stored shape
(e.g. ``(18, 512)`` for W+); models flatten it where it enters them.

Pairs are kept as index arrays into the dataset, never as materialised latent matrices: the
``all`` strategy on 3 x 600 photos gives over 500 000 pairs, and models use the structure
(per-start counts) instead of a dense pair-by-feature matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aging import io as aio
from aging.errors import AgingError, FileFormatError

PAIR_STRATEGIES = ("first", "all", "random")
SPLITS = ("internal", "future", "external")
MAX_PAIRS = 10_000_000  # random pairs are index arrays: 10 M is 160 MB


class LatentDatasetError(AgingError, ValueError):
    """A latent dataset on disk is malformed (the message names the file)."""


@dataclass
class Subject:
    """One person's photo sequence, sorted by age."""

    name: str
    ages: np.ndarray  # [n] int64, days, strictly increasing
    latents: np.ndarray  # [n, *latent_shape] float32
    clean: np.ndarray | None = None  # [n, *latent_shape] noise-free latents (synthetic data only)

    def __len__(self) -> int:
        return len(self.ages)


def _latent_dir(folder: Path) -> Path:
    sub = folder / "latents"
    return sub if sub.is_dir() else folder


def latent_files(folder: str | Path) -> list[Path]:
    """The latent files of a subject folder (or of its ``latents/`` sub-folder), sorted by name,
    without hidden files and the temporaries of interrupted writes."""
    return aio.data_files(_latent_dir(Path(folder)), (".npy",))


def load_subject(folder: str | Path, name: str | None = None, shape: tuple[int, ...] | None = None) -> Subject:
    """Load one subject folder of ``<age_days>.npy`` latents (or its ``latents/`` sub-folder).

    Every latent must have the shape of the first one (or ``shape`` when given). Errors are one
    :class:`LatentDatasetError` line naming the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LatentDatasetError(f"{folder}: not a directory")
    src = _latent_dir(folder)
    files = latent_files(folder)
    if not files:
        raise LatentDatasetError(f"{src}: empty subject (no <age_days>.npy files)")
    ages, arrays = [], []
    for f in files:
        try:
            age = aio.age_from_name(f)
            arr = aio.read_latent(f)  # readable, floating point, finite
        except FileFormatError as exc:
            raise LatentDatasetError(str(exc)) from None
        if shape is not None and arr.shape != tuple(shape):
            raise LatentDatasetError(f"{f}: latent has shape {arr.shape}, expected {tuple(shape)} "
                                     f"(the shape of the dataset's other latents)")
        if arrays and arr.shape != arrays[0].shape:
            raise LatentDatasetError(f"{f}: latent has shape {arr.shape}, expected {arrays[0].shape} "
                                     f"(the shape of {files[0].name})")
        ages.append(age)
        arrays.append(arr)
    order = np.argsort(ages, kind="stable")
    ages_arr = np.asarray(ages, dtype=np.int64)[order]
    dup = np.nonzero(np.diff(ages_arr) == 0)[0]
    if len(dup):
        a, b = files[order[dup[0]]].name, files[order[dup[0] + 1]].name
        raise LatentDatasetError(f"{src}: two latents for age {ages_arr[dup[0]]} days, {a} and {b} "
                                 f"(keep one of them)")
    latents = np.stack([arrays[i] for i in order]).astype(np.float32, copy=False)
    return Subject(name=name or folder.name, ages=ages_arr, latents=latents)


@dataclass
class LatentDataset:
    """A set of subjects with latents of one shape.

    Photos are addressed globally: photo ``g`` belongs to subject ``subject_of[g]``, whose photos
    are ``photos_of(subject)``. ``latents_flat`` is a ``[num_photos, D]`` view of every latent.
    """

    subjects: list[Subject]
    root: Path | None = None
    truth: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.subjects:
            raise LatentDatasetError(f"{self.root or 'dataset'}: no subjects")
        shape = self.subjects[0].latents.shape[1:]
        for s in self.subjects:
            ages = np.asarray(s.ages)
            if ages.ndim != 1 or len(ages) == 0 or not np.issubdtype(ages.dtype, np.integer):
                raise LatentDatasetError(f"subject {s.name}: ages must be a non-empty list of whole days")
            if np.any(np.diff(ages) <= 0):
                raise LatentDatasetError(f"subject {s.name}: ages must be strictly increasing")
            if s.latents.ndim < 2 or len(s.latents) != len(ages) or s.latents[0].size == 0:
                raise LatentDatasetError(f"subject {s.name}: {len(ages)} ages but latents of shape {s.latents.shape}")
            if not np.all(np.isfinite(s.latents)):
                raise LatentDatasetError(f"subject {s.name}: latents contain NaN or inf")
            if s.latents.shape[1:] != shape:
                raise LatentDatasetError(
                    f"subject {s.name}: latent shape {s.latents.shape[1:]} differs from "
                    f"{self.subjects[0].name} {shape}"
                )
        self.latent_shape = tuple(shape)
        sizes = np.array([len(s) for s in self.subjects])
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.subject_of = np.repeat(np.arange(len(self.subjects)), sizes)
        self.ages = np.concatenate([s.ages for s in self.subjects])  # [N] days
        self.latents_flat = np.concatenate(
            [s.latents.reshape(len(s), -1) for s in self.subjects]
        )  # [N, D]
        if all(s.clean is not None for s in self.subjects):
            self.clean_flat = np.concatenate([s.clean.reshape(len(s), -1) for s in self.subjects])
        else:
            self.clean_flat = None

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, root: str | Path, subjects: list[str] | None = None) -> "LatentDataset":
        """Load every subject folder under ``root`` (sorted by name), or only ``subjects``.

        A ``truth.npz`` beside the subjects (written by ``aging synth``) attaches the noise-free
        latents, so evaluations can report the noise floor (see :func:`attach_truth`).
        Hidden files and the temporaries of interrupted writes are ignored; anything else that is
        not a valid latent is a one-line :class:`LatentDatasetError` naming the file.
        """
        root = Path(root)
        if not root.exists():
            raise LatentDatasetError(f"{root}: no such directory")
        if not root.is_dir():
            raise LatentDatasetError(f"{root}: not a directory")
        if subjects is None:
            if _has_latents(root):  # the folder itself is one subject
                folders = [root]
            else:
                folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
        else:
            folders = [root / s for s in subjects]
            for f in folders:
                if not f.is_dir():
                    raise LatentDatasetError(f"{f}: no such subject")
        if not folders:
            raise LatentDatasetError(f"{root}: no subject folders with <age_days>.npy latents")
        subs = []
        for f in folders:
            subs.append(load_subject(f, shape=subs[0].latents.shape[1:] if subs else None))
        truth = None
        truth_path = root / "truth.npz"
        if truth_path.is_file():
            truth = attach_truth(subs, truth_path)
        return cls(subs, root=root, truth=truth)

    # -- access ----------------------------------------------------------------------------
    @property
    def num_photos(self) -> int:
        return int(self.offsets[-1])

    @property
    def dim(self) -> int:
        return int(self.latents_flat.shape[1])

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.subjects]

    def photos_of(self, subject: int) -> np.ndarray:
        """Global photo indices of one subject, in age order."""
        return np.arange(self.offsets[subject], self.offsets[subject + 1])

    def index_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise LatentDatasetError(f"no subject named {name!r} (have: {', '.join(self.names)})") from None


def _has_latents(folder: Path) -> bool:
    return bool(latent_files(folder))


def attach_truth(subjects: list[Subject], path: Path) -> dict:
    """Read a ``truth.npz`` (written by ``aging synth``) and set each subject's ``clean`` latents.

    A subject the truth does not mention gets none (the noise floor is then not reported). A
    truth that does not fit the latents (another latent shape, ages it does not hold, missing or
    non-finite arrays) would give wrong numbers: it is refused with one line naming the file.
    """
    try:
        truth = aio.read_npz(path, what="ground-truth archive")
    except FileFormatError as exc:
        raise LatentDatasetError(f"{exc}; delete it to use the dataset without ground truth") from None
    fix = "the truth belongs to other latents; delete it to use the dataset without ground truth"
    for s in subjects:
        key, age_key = f"clean/{s.name}", f"ages/{s.name}"
        if key not in truth:
            continue
        clean, clean_ages = truth[key], truth.get(age_key)
        if clean_ages is None or clean_ages.ndim != 1 or not np.issubdtype(clean_ages.dtype, np.integer):
            raise LatentDatasetError(f"{path}: no integer array {age_key} beside {key} ({fix})")
        if clean.shape != (len(clean_ages),) + s.latents.shape[1:] or not np.issubdtype(clean.dtype, np.floating):
            raise LatentDatasetError(f"{path}: {key} has shape {clean.shape} ({clean.dtype}), expected "
                                     f"{(len(clean_ages),) + s.latents.shape[1:]} floats ({fix})")
        order = np.argsort(clean_ages, kind="stable")
        sorted_ages = clean_ages[order]
        idx = np.minimum(np.searchsorted(sorted_ages, s.ages), len(sorted_ages) - 1)
        missing = s.ages[sorted_ages[idx] != s.ages] if len(sorted_ages) else s.ages
        if len(missing):
            raise LatentDatasetError(f"{path}: no clean latent of {s.name} at age {int(missing[0])} days "
                                     f"({len(missing)} of its {len(s)} photos are not in the truth; {fix})")
        picked = clean[order[idx]]
        if not np.all(np.isfinite(picked)):
            raise LatentDatasetError(f"{path}: {key} contains NaN or inf ({fix})")
        s.clean = picked.astype(np.float32)
    return truth


# ---------------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------------


@dataclass
class PairSet:
    """Training or test pairs (start photo -> target photo) as global photo indices.

    ``start[k]`` and ``target[k]`` index ``dataset.latents_flat``; both belong to one subject and
    the target is strictly older. ``photos`` lists the photos a model may learn sequences from
    (for a training set: every photo it is allowed to see).
    """

    dataset: LatentDataset
    start: np.ndarray  # [P] int64
    target: np.ndarray  # [P] int64
    photos: np.ndarray  # [M] int64, sorted

    def __len__(self) -> int:
        return len(self.start)

    @property
    def start_ages(self) -> np.ndarray:
        return self.dataset.ages[self.start]

    @property
    def target_ages(self) -> np.ndarray:
        return self.dataset.ages[self.target]

    def subset(self, mask_or_index) -> "PairSet":
        return PairSet(self.dataset, self.start[mask_or_index], self.target[mask_or_index], self.photos)

    def sequences(self) -> list[np.ndarray]:
        """Per subject, the global indices of its visible photos in age order (non-empty only)."""
        subj = self.dataset.subject_of[self.photos]
        return [self.photos[subj == s] for s in np.unique(subj)]

    def by_start(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Group pairs by start photo: (unique starts, list of pair indices per start)."""
        order = np.argsort(self.start, kind="stable")
        starts, first = np.unique(self.start[order], return_index=True)
        groups = np.split(order, first[1:])
        return starts, groups


def _pairs_first(ds: LatentDataset, photos_by_subject: list[np.ndarray]):
    s, t = [], []
    for ph in photos_by_subject:
        if len(ph) < 2:
            continue
        s.append(np.full(len(ph) - 1, ph[0]))
        t.append(ph[1:])
    return _cat(s), _cat(t)


def _pairs_all(ds: LatentDataset, photos_by_subject: list[np.ndarray]):
    s, t = [], []
    for ph in photos_by_subject:
        ages = ds.ages[ph]
        i, j = np.triu_indices(len(ph), k=1)
        keep = ages[j] > ages[i]
        s.append(ph[i[keep]])
        t.append(ph[j[keep]])
    return _cat(s), _cat(t)


def _pairs_random(ds: LatentDataset, photos_by_subject: list[np.ndarray], n: int, min_gap: int, rng):
    """``n`` random pairs with target age - start age >= ``min_gap`` days, drawn with
    replacement, subjects weighted by their number of admissible pairs."""
    counts, tables = [], []
    for ph in photos_by_subject:
        ages = ds.ages[ph]
        # for each start i, admissible targets are ph[j] with ages[j] >= ages[i] + max(min_gap, 1)
        lo = np.searchsorted(ages, ages + max(min_gap, 1), side="left")
        per_start = len(ph) - lo
        counts.append(per_start.sum())
        tables.append((ph, lo, per_start))
    total = int(np.sum(counts))
    if total == 0:
        gaps = [int(ds.ages[ph[-1]] - ds.ages[ph[0]]) for ph in photos_by_subject if len(ph)]
        raise LatentDatasetError(f"{_where(ds)}no random pairs with an age gap of at least {max(min_gap, 1)} days "
                                 f"(--min-gap): the largest gap within a subject is {max(gaps, default=0)} days")
    s = np.empty(n, dtype=np.int64)
    t = np.empty(n, dtype=np.int64)
    # draw a flat index into the admissible pairs of all subjects
    flat = rng.integers(0, total, size=n)
    base = 0
    for ph, lo, per_start in tables:
        cum = np.concatenate([[0], np.cumsum(per_start)])
        sel = (flat >= base) & (flat < base + cum[-1])
        k = flat[sel] - base
        i = np.searchsorted(cum, k, side="right") - 1
        j = lo[i] + (k - cum[i])
        s[sel], t[sel] = ph[i], ph[j]
        base += cum[-1]
    return s, t


def _cat(parts) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def make_pairs(
    dataset: LatentDataset,
    strategy: str = "first",
    *,
    photos: np.ndarray | None = None,
    n_pairs: int = 6100,
    min_gap: int = 0,
    seed: int = 0,
) -> PairSet:
    """Build pairs among ``photos`` (default: all photos) with a named strategy.

    ``first``: each subject's youngest photo -> every later photo (the study's regressions).
    ``all``: every ordered pair with target age > start age.
    ``random``: ``n_pairs`` random pairs with an age gap of at least ``min_gap`` days (the study's
    MLP "forced distance" data), seeded.
    """
    if strategy not in PAIR_STRATEGIES:
        raise LatentDatasetError(f"unknown pairing strategy {strategy!r} (choose from {', '.join(PAIR_STRATEGIES)})")
    n_pairs = _whole(n_pairs, "n_pairs (--n-pairs), the number of random pairs,", 1)
    min_gap = _whole(min_gap, "min_gap (--min-gap), the minimum age gap in days,", 0)
    photos = np.arange(dataset.num_photos) if photos is None else np.sort(np.asarray(photos, dtype=np.int64))
    subj = dataset.subject_of[photos]
    by_subject = [photos[subj == k] for k in np.unique(subj)]
    if strategy == "first":
        s, t = _pairs_first(dataset, by_subject)
    elif strategy == "all":
        s, t = _pairs_all(dataset, by_subject)
    else:
        s, t = _pairs_random(dataset, by_subject, n_pairs, min_gap, np.random.default_rng(seed))
    return PairSet(dataset, s, t, photos)


def _whole(value, what: str, low: int) -> int:
    """``value`` as an int when it is a whole number >= ``low``, else a one-line error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise LatentDatasetError(f"{what} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _where(ds: LatentDataset) -> str:
    return f"{ds.root}: " if ds.root is not None else ""


def _photo_counts(ds: LatentDataset, limit: int = 4) -> str:
    """``"subject ann has 2 photos"`` / ``"subjects ann (2 photos), bob (3 photos)"``, fewest first."""
    def photos(k: int) -> str:
        n = len(ds.subjects[k])
        return f"{n} photo{'s' if n != 1 else ''}"

    if len(ds.subjects) == 1:
        return f"subject {ds.subjects[0].name} has {photos(0)}"
    order = sorted(range(len(ds.subjects)), key=lambda k: (len(ds.subjects[k]), k))
    parts = [f"{ds.subjects[k].name} ({photos(k)})" for k in order[:limit]]
    more = f", ... ({len(ds.subjects)} subjects)" if len(ds.subjects) > limit else ""
    return "subjects " + ", ".join(parts) + more


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


@dataclass
class Fold:
    """One train/test split. ``holdout`` names the held-out subject of an external fold."""

    train: PairSet
    test: PairSet
    holdout: str | None = None


@dataclass(frozen=True)
class EvalProtocol:
    """How a model is trained and tested: which pairs, which split, the seed.

    The options object of the evaluation protocol: :func:`aging.scoring.fit_and_score` takes it,
    ``aging train`` reads its defaults from it, and an experiment's run
    (:class:`aging.experiments.RunConfig`) extends it with the model.
    """

    pairs: str = "first"  # PAIR_STRATEGIES
    split: str = "internal"  # SPLITS
    seed: int = 0
    n_pairs: int = 6100  # random pairs drawn (pairs = "random")
    min_gap: int = 0  # minimum age gap of random pairs, days
    holdout: str | None = None  # external split: hold out only this subject
    test_fraction: float = 0.2  # internal and future splits

    def folds(self, dataset: "LatentDataset") -> list[Fold]:
        """The train/test folds of ``dataset`` (see :func:`make_splits`)."""
        return make_splits(dataset, self.split, self.pairs, test_fraction=self.test_fraction, holdout=self.holdout,
                           n_pairs=self.n_pairs, min_gap=self.min_gap, seed=self.seed)

    def every_pair(self, dataset: "LatentDataset") -> PairSet:
        """The pairs of every photo of ``dataset`` (what a model is refitted on after external folds)."""
        return make_pairs(dataset, self.pairs, n_pairs=self.n_pairs, min_gap=self.min_gap, seed=self.seed)


def make_splits(
    dataset: LatentDataset,
    split: str = "internal",
    pairs: str = "first",
    *,
    test_fraction: float = 0.2,
    holdout: str | None = None,
    n_pairs: int = 6100,
    min_gap: int = 0,
    seed: int = 0,
) -> list[Fold]:
    """Train/test folds.

    ``internal``: pairs of every photo, split 80/20 at random (the study's protocol; start
    photos are shared between train and test).
    ``future``: per subject, the earliest 80 % of photos are for training (pairs among them);
    test pairs start from a training photo and end at a later, unseen photo. For ``first`` the
    start is the subject's youngest photo: predict the later years from the first photo.
    ``external``: leave one subject out (every subject in turn, or only ``holdout``); test pairs
    start at the held-out subject's youngest photo and end at each later photo.
    """
    if split not in SPLITS:
        raise LatentDatasetError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    if pairs not in PAIR_STRATEGIES:
        raise LatentDatasetError(f"unknown pairing strategy {pairs!r} (choose from {', '.join(PAIR_STRATEGIES)})")
    if isinstance(test_fraction, (bool, np.bool_)) or not isinstance(test_fraction, (int, float, np.number)) \
            or not 0.0 < float(test_fraction) < 1.0:
        raise LatentDatasetError(f"test_fraction (--test-fraction) must be a number between 0 and 1 "
                                 f"(exclusive), got {test_fraction!r}")
    draw = dict(strategy=pairs, n_pairs=n_pairs, min_gap=min_gap, seed=seed)
    if split == "internal":
        return [_internal_fold(dataset, draw, test_fraction, np.random.default_rng(seed))]
    if split == "future":
        return [_future_fold(dataset, draw, test_fraction)]
    return _external_folds(dataset, draw, holdout)


def _internal_fold(dataset: LatentDataset, draw: dict, test_fraction: float, rng) -> Fold:
    """Every pair of every photo, a random ``test_fraction`` of them held out."""
    everything = make_pairs(dataset, **draw)
    perm = rng.permutation(len(everything))
    n_test = int(round(test_fraction * len(everything)))
    if n_test == 0 or n_test == len(everything):
        pairs = draw["strategy"]
        fix = ("use a smaller --test-fraction" if n_test else
               "use a larger --n-pairs" if pairs == "random" else
               "add photos, use --pairs all or a larger --test-fraction, or --split future")
        raise LatentDatasetError(
            f"{_where(dataset)}too few pairs ({len(everything)} {pairs} pairs) for an internal split: a test "
            f"fraction of {test_fraction} leaves {n_test} test and {len(everything) - n_test} training "
            f"pairs; {_photo_counts(dataset)}; {fix}")
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    # the training photos: those that take part in a training pair
    train = everything.subset(train_idx)
    train.photos = np.unique(np.concatenate([train.start, train.target]))
    return Fold(train, everything.subset(test_idx))


def _future_fold(dataset: LatentDataset, draw: dict, test_fraction: float) -> Fold:
    """Each subject's earliest photos to train on; test pairs end at its later, unseen photos."""
    train_photos = []
    for k in range(len(dataset.subjects)):
        ph = dataset.photos_of(k)
        n_train = min(max(int(np.ceil((1.0 - test_fraction) * len(ph))), 2), len(ph) - 1)
        if n_train < 2:
            raise LatentDatasetError(
                f"{_where(dataset)}subject {dataset.subjects[k].name} has {len(ph)} "
                f"photo{'s' if len(ph) != 1 else ''}: a future split needs at least 3 per subject (2 to train "
                f"on, 1 later to test); add photos or use --split internal")
        train_photos.append(ph[:n_train])
    train_photos = np.concatenate(train_photos)
    train = make_pairs(dataset, photos=train_photos, **draw)
    # test: start from visible (training) photos, end at unseen later photos
    full = make_pairs(dataset, **{**draw, "seed": draw["seed"] + 1})
    in_train = np.zeros(dataset.num_photos, bool)
    in_train[train_photos] = True
    test = full.subset(in_train[full.start] & ~in_train[full.target])
    test.photos = np.arange(dataset.num_photos)
    if len(test) == 0:
        raise LatentDatasetError(f"{_where(dataset)}the future split has no test pairs ({draw['strategy']} pairs "
                                 f"from a training photo to a later one); use another --pairs or a smaller --min-gap")
    return Fold(train, test)


def _external_folds(dataset: LatentDataset, draw: dict, holdout: str | None) -> list[Fold]:
    """Leave one subject out: every subject in turn, or only ``holdout``."""
    where = _where(dataset)
    if len(dataset.subjects) < 2:
        raise LatentDatasetError(f"{where}an external split holds out whole subjects and needs at least two; "
                                 f"the dataset has one ({dataset.subjects[0].name}): use --split internal or future")
    if holdout is not None and holdout not in dataset.names:
        raise LatentDatasetError(f"{where}--holdout {holdout!r}: no such subject (have: {', '.join(dataset.names)})")
    holdouts = range(len(dataset.subjects)) if holdout is None else [dataset.index_of(holdout)]
    folds = []
    for k in holdouts:
        train = make_pairs(dataset, photos=np.nonzero(dataset.subject_of != k)[0], **draw)
        test = make_pairs(dataset, "first", photos=dataset.photos_of(k))
        folds.append(Fold(train, test, holdout=dataset.subjects[k].name))
    return folds
