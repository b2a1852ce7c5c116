"""Labelled datasets as contextual bandits, `Classification-v0`, with UCI loaders.

Each round shows one row x of a dataset; there is one arm per class and the
reward is 1 for the row's class and 0 otherwise, so expected rewards are exact
given the label, e_{y}, and cumulative regret is the number of mistakes. Rows are
visited in a fresh random order per stream (drawn in `reset`); a stream longer
than the dataset starts the same order again.

Options:
  * `encoding`: "context" (obs.context = x (d,), no arm features) or "disjoint"
    (additionally obs.arms[k] = e_k (x) x (K d,), the k-th block holding x: the
    input of NeuralUCB / NeuralTS in Zhou et al. 2020 and Zhang et al. 2021).
  * `reward`: "classification", or "mushroom" for the mushroom bandit of
    Riquelme et al. (2018): arm 0 = do not eat (reward 0), arm 1 = eat (reward +5
    for an edible mushroom; +5 or -35 with probability 1/2 each for a poisonous one,
    expected -15).
  * `scaling`: "standardize" (non-binary columns to zero mean and unit variance,
    then clipped to [-clip, clip]; one-hot columns stay 0/1) or "unit_norm" (the
    standardized row divided by its Euclidean norm, so |x_j| <= 1).

Datasets (`load_dataset(name)`; copies under `envs/data/uci`, see its README for
sources, licences and checksums):
  * "mushroom": 8,124 rows, 22 categorical attributes one-hot encoded (a missing
    value is its own category), 2 classes (edible, poisonous).
  * "shuttle": Statlog shuttle, training and test files together, 58,000 rows,
    9 numeric attributes, 7 classes.
  * "adult": training and test files together, 48,842 rows, 6 numeric and 8
    categorical attributes (one-hot), 2 classes (<=50K, >50K).
  * "magic": MAGIC gamma telescope, 19,020 rows, 10 numeric attributes, 2 classes.
  * "digits", "wine", "breast_cancer": bundled with scikit-learn (the optional
    `datasets` extra); their loaders raise a clear error without it.
  * any arrays registered with `register_dataset(name, features, labels)`.

References:
  Dua & Graff / Kelly, Longjohn & Nottingham, "The UCI Machine Learning
  Repository", https://archive.ics.uci.edu.
  Riquelme, Tucker & Snoek (2018), "Deep Bayesian bandits showdown", ICLR.
  Zhang, Zhou, Li & Gu (2021), "Neural Thompson sampling", ICLR.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import hashlib
import importlib.resources
import io
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bandits.types import ArraySpec, Feedback, Observation
from bandits.validation import BanditConfigError, choice, real
from envs.base import (
    BanditEnv,
    PyTreeData,
    all_arms,
    no_arm_features,
    pytree_dataclass,
    register,
)

ENCODINGS = ("context", "disjoint")
REWARDS = ("classification", "mushroom")
SCALINGS = ("standardize", "unit_norm")
UCI_DATASETS = ("mushroom", "shuttle", "adult", "magic")
SKLEARN_DATASETS = ("digits", "wine", "breast_cancer")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled dataset: raw numeric features and integer labels."""

    name: str
    features: np.ndarray  # (N, d) float32, one-hot columns are 0/1
    labels: np.ndarray  # (N,) int32 in [0, K)
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ---------------------------------------------------------------------------
# Loaders


def _data_file(*parts: str):
    return importlib.resources.files("envs").joinpath("data", "uci", *parts)


def _read_rows(*parts: str, delimiter: str = ",", skip: int = 0) -> list[list[str]]:
    """Rows of a gzipped text file shipped with the package, stripped, no blanks."""
    with _data_file(*parts).open("rb") as raw, gzip.open(raw, "rt") as text:
        lines = text.read().splitlines()[skip:]
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    return [[cell.strip() for cell in row] for row in reader if row]


def _labels(values: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[v] for v in values], np.int32)


def _one_hot_columns(columns: Sequence[Sequence[str]]) -> np.ndarray:
    """One 0/1 column per category (sorted) of each categorical column."""
    blocks = []
    for column in columns:
        categories = sorted(set(column))
        index = {c: i for i, c in enumerate(categories)}
        codes = np.asarray([index[v] for v in column])
        blocks.append(np.eye(len(categories), dtype=np.float32)[codes])
    return np.concatenate(blocks, axis=1)


def load_mushroom() -> Dataset:
    """UCI mushroom: 8,124 rows, 22 one-hot attributes (117 columns), e/p."""
    rows = _read_rows("mushroom", "agaricus-lepiota.data.gz")
    columns = list(zip(*rows, strict=True))
    classes = ("e", "p")
    return Dataset(
        "mushroom",
        _one_hot_columns(columns[1:]),
        _labels(columns[0], classes),
        ("edible", "poisonous"),
    )


def load_shuttle() -> Dataset:
    """Statlog shuttle (train + test): 58,000 rows, 9 numeric attributes, 7 classes."""
    rows = _read_rows("shuttle", "shuttle.trn.gz", delimiter=" ") + _read_rows(
        "shuttle", "shuttle.tst.gz", delimiter=" "
    )
    data = np.asarray(rows, np.float32)
    names = ("Rad Flow", "Fpv Close", "Fpv Open", "High", "Bypass", "Bpv Close")
    return Dataset(
        "shuttle",
        data[:, :9],
        data[:, 9].astype(np.int32) - 1,
        (*names, "Bpv Open"),
    )


ADULT_NUMERIC = (0, 2, 4, 10, 11, 12)


def load_adult() -> Dataset:
    """UCI adult (data + test): 48,842 rows, 6 numeric + 8 one-hot attributes."""
    rows = _read_rows("adult", "adult.data.gz") + _read_rows(
        "adult", "adult.test.gz", skip=1
    )
    columns = list(zip(*rows, strict=True))
    numeric = np.asarray([columns[i] for i in ADULT_NUMERIC], np.float32).T
    categorical = [columns[i] for i in range(14) if i not in ADULT_NUMERIC]
    labels = [v.rstrip(".") for v in columns[14]]
    return Dataset(
        "adult",
        np.concatenate([numeric, _one_hot_columns(categorical)], axis=1),
        _labels(labels, ("<=50K", ">50K")),
        ("<=50K", ">50K"),
    )


def load_magic() -> Dataset:
    """MAGIC gamma telescope: 19,020 rows, 10 numeric attributes, gamma/hadron."""
    rows = _read_rows("magic04", "magic04.data.gz")
    columns = list(zip(*rows, strict=True))
    return Dataset(
        "magic",
        np.asarray(columns[:10], np.float32).T,
        _labels(columns[10], ("g", "h")),
        ("gamma", "hadron"),
    )


def _load_sklearn(name: str) -> Dataset:
    try:
        from sklearn import datasets as sk
    except ImportError:
        raise BanditConfigError(
            f"dataset {name!r} comes from scikit-learn, which is not installed; "
            "install the optional extra: pip install 'bandits[datasets]'"
        ) from None
    loader = {
        "digits": sk.load_digits,
        "wine": sk.load_wine,
        "breast_cancer": sk.load_breast_cancer,
    }[name]
    bunch = loader()
    return Dataset(
        name,
        np.asarray(bunch.data, np.float32),
        np.asarray(bunch.target, np.int32),
        tuple(str(c) for c in bunch.target_names),
    )


_LOADERS: dict[str, Callable[[], Dataset]] = {
    "mushroom": load_mushroom,
    "shuttle": load_shuttle,
    "adult": load_adult,
    "magic": load_magic,
    **{name: functools.partial(_load_sklearn, name) for name in SKLEARN_DATASETS},
}
_CUSTOM: dict[str, Dataset] = {}


def register_dataset(
    name: str,
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
) -> None:
    """Makes a labelled array dataset available as `Classification-v0(dataset=name)`.

    Args:
      name: a new dataset name.
      features: (N, d) finite numbers.
      labels: (N,) integers in [0, K).
      class_names: K names (default "0".."K-1").
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise BanditConfigError(
            f"features must be (N, d) and labels (N,), got {features.shape} and "
            f"{labels.shape}"
        )
    if not np.all(np.isfinite(features)):
        raise BanditConfigError("features must be finite")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min(initial=0) < 0:
        raise BanditConfigError("labels must be integers >= 0")
    num_classes = int(labels.max()) + 1 if labels.size else 0
    names = tuple(class_names or (str(k) for k in range(num_classes)))
    if len(names) < num_classes or num_classes < 2:
        raise BanditConfigError(
            f"need >= 2 classes and a name for each, got {num_classes} classes and "
            f"{len(names)} names"
        )
    if name in _LOADERS or (
        name in _CUSTOM and not _same(_CUSTOM[name], features, labels)
    ):
        raise BanditConfigError(f"dataset name {name!r} is already taken")
    _CUSTOM[name] = Dataset(name, features, labels.astype(np.int32), names)
    _scaled.cache_clear()


def _same(dataset: Dataset, features, labels) -> bool:
    return np.array_equal(dataset.features, features) and np.array_equal(
        dataset.labels, labels
    )


def dataset_names() -> tuple[str, ...]:
    return (*_LOADERS, *_CUSTOM)


@functools.cache
def _load_builtin(name: str) -> Dataset:
    return _LOADERS[name]()


def load_dataset(name: str) -> Dataset:
    """The raw dataset `name` (see module docstring); loaded once per process."""
    choice("dataset", name, dataset_names())
    if name in _CUSTOM:
        return _CUSTOM[name]
    return _load_builtin(name)


def scale_features(x: np.ndarray, scaling: str, clip: float) -> np.ndarray:
    """Standardizes non-binary columns (then clips); "unit_norm" also row-normalises."""
    x = np.asarray(x, np.float64)
    binary = np.all((x == 0) | (x == 1), axis=0)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    z = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), 0.0)
    z = np.where(binary, x, np.clip(z, -clip, clip))
    if scaling == "unit_norm":
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        z = z / np.where(norm > 0, norm, 1.0)
    return z.astype(np.float32)


@functools.cache
def _scaled(name: str, scaling: str, clip: float) -> tuple[np.ndarray, np.ndarray, int]:
    dataset = load_dataset(name)
    return (
        scale_features(dataset.features, scaling, clip),
        dataset.labels,
        dataset.num_classes,
    )


def fingerprint(name: str) -> str:
    """A short content hash of a dataset (for result provenance)."""
    dataset = load_dataset(name)
    digest = hashlib.sha256(dataset.features.tobytes())
    digest.update(dataset.labels.tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------
# The environment


@pytree_dataclass
class ClassificationParams(PyTreeData):
    features: jax.Array  # (N, d)  scaled rows
    labels: jax.Array  # (N,) int32


@pytree_dataclass
class ClassificationState(PyTreeData):
    order: jax.Array  # (N,) int32  this stream's row order
    t: jax.Array  # () int32  rounds played


@dataclasses.dataclass(frozen=True)
class ClassificationEnv(BanditEnv):
    """A labelled dataset as a bandit (see module docstring)."""

    dataset: str = "mushroom"
    encoding: str = "context"
    reward: str = "classification"
    scaling: str = "standardize"
    clip: float = 5.0
    params_seed: int = 0

    def __post_init__(self):
        choice("dataset", self.dataset, dataset_names())
        choice("encoding", self.encoding, ENCODINGS)
        choice("reward", self.reward, REWARDS)
        choice("scaling", self.scaling, SCALINGS)
        real("clip", self.clip, low=0.0, low_open=True)
        if self.reward == "mushroom" and self.dataset != "mushroom":
            raise BanditConfigError.about(
                "reward", f"= 'mushroom' needs dataset='mushroom', got {self.dataset!r}"
            )

    @property
    def _data(self) -> tuple[np.ndarray, np.ndarray, int]:
        return _scaled(self.dataset, self.scaling, float(self.clip))

    @property
    def num_arms(self) -> int:
        return self._data[2]

    @property
    def num_rows(self) -> int:
        return int(self._data[1].shape[0])

    @property
    def dim(self) -> int:
        return int(self._data[0].shape[1])

    @property
    def bound(self) -> float:
        return 1.0 if self.scaling == "unit_norm" else max(1.0, float(self.clip))

    def sample_params(self, key: jax.Array) -> ClassificationParams:
        del key
        features, labels, _ = self._data
        return ClassificationParams(jnp.asarray(features), jnp.asarray(labels))

    def reset(self, key, params):
        order = jax.random.permutation(key, params.labels.shape[0]).astype(jnp.int32)
        state = ClassificationState(order=order, t=jnp.zeros((), jnp.int32))
        return self._observe(state, params), state

    def step(self, key, state, action, params):
        expected = self.expected_rewards(state, params)
        if self.reward == "mushroom":
            poisonous = params.labels[self._row(state)] == 1
            lucky = jax.random.bernoulli(key)
            eat = jnp.where(poisonous, jnp.where(lucky, 5.0, -35.0), 5.0)
            reward = jnp.where(action == 1, eat, 0.0).astype(jnp.float32)
        else:
            del key
            reward = expected[action]
        next_state = ClassificationState(order=state.order, t=state.t + 1)
        return self._observe(next_state, params), next_state, Feedback(reward, expected)

    def expected_rewards(self, state, params):
        label = params.labels[self._row(state)]
        if self.reward == "mushroom":
            eat = jnp.where(label == 1, -15.0, 5.0)
            return jnp.stack([jnp.zeros_like(eat), eat]).astype(jnp.float32)
        return jax.nn.one_hot(label, self.num_arms, dtype=jnp.float32)

    def observation_spec(self):
        K, d, b = self.num_arms, self.dim, self.bound
        arm_width = d * K if self.encoding == "disjoint" else 0
        return {
            "context": ArraySpec((d,), jnp.float32, -b, b),
            "arms": ArraySpec((K, arm_width), jnp.float32, -b, b),
            "mask": ArraySpec((K,), jnp.bool_, 0, 1),
        }

    def _row(self, state):
        return state.order[state.t % state.order.shape[0]]

    def _observe(self, state, params):
        x = params.features[self._row(state)]
        K = self.num_arms
        if self.encoding == "disjoint":
            arms = jnp.kron(jnp.eye(K, dtype=x.dtype), x[None, :])
        else:
            arms = no_arm_features(K)
        return Observation(context=x, arms=arms, mask=all_arms(K))


def classification(
    *,
    dataset: str = "mushroom",
    encoding: str = "context",
    reward: str = "classification",
    scaling: str = "standardize",
    clip: float = 5.0,
    params_seed: int = 0,
) -> ClassificationEnv:
    """A labelled dataset as a bandit; see the module docstring."""
    return ClassificationEnv(dataset, encoding, reward, scaling, clip, params_seed)


register(
    "Classification-v0",
    classification,
    "A labelled dataset as a bandit: one arm per class, reward 1 for the right "
    "class (UCI mushroom, shuttle, adult, magic; scikit-learn digits, wine, "
    "breast_cancer; or registered arrays).",
)
