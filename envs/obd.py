"""The Open Bandit Dataset: real logged traffic with true propensities.

ZOZOTOWN, a fashion e-commerce site, showed three items at once (positions
left, centre, right) to each visitor, chosen by one of two logging policies that
ran side by side on the same traffic for a week: uniform random and Bernoulli
Thompson sampling (BTS). The project ships the public small sample (10,000
impressions per policy and campaign; campaigns "all" (80 items), "men" (34) and
"women" (46)) under `envs/data/obd/` with its licence and attribution
(Apache-2.0; see the README there). Because both policies ran on the same users,
the on-policy click rate of one is the ground truth for an off-policy estimate
computed from the other's logs.

    log = obd.load("random", "all")              # a `logged.LoggedData`
    alpha, beta = obd.bts_prior("all")           # BTS's Beta(alpha, beta) per item
    probs = obd.bts_position_probs(alpha, beta)  # (K, 3) P(item at slot)

Each row is one impression, mapped to the logged-data type as

  context     (n, d)     one-hot of the hashed categories user_feature_0..3
                         (sorted, the vocabulary of both policies' logs of the
                         campaign, so the two logs share one encoding), then the
                         K user-item affinities user-item_affinity_0..K-1
  arms        (n, K, p)  every item's features (the same for every row, a
                         read-only broadcast): item_feature_0 (numeric) and the
                         one-hot of item_feature_1..3
  mask        (n, K)     all True: any item may be shown
  action      (n,)       item_id
  position    (n,)       the slot, 0-based (the file codes 1, 2, 3)
  reward      (n,)       click (0 or 1)
  propensity  (n,)       propensity_score: the logging policy's probability of
                         this item at this position (see below)
  stream, step           0 and the row's index in time order (the rows are
                         sorted by timestamp)

`action_probs` and `expected_rewards` are None: real logs record neither.

Item categories are hashed with a different salt in the two policies' copies of
`item_context.csv`, but group the items identically; they are one-hot encoded in
the order of first appearance by item id, so both copies give the same features.

What a propensity means. `propensity_score` is a per-position probability,
pi_0(item | position), so that over the items it sums to 1 at each position:
1/K on every row of the random logs. The dataset's documentation says so ("the
probability of an item being recommended at the given position"), Open Bandit
Pipeline's estimators divide the evaluation policy's probability of the logged
(item, position) by it, and the BTS logs agree: the mean of 1 / propensity over
rows estimates the number of items K under that reading (sum over items of
pi_0 / pi_0) and K / 3 under a slate-level one; on bts/all it is 80.9 (95%
bootstrap interval 74-89) for K = 80, against 26.7 for the slate reading (tested
in tests/envs/test_obd.py; docs/ope.md has the details).

References:
  Saito, Aihara, Matsutani & Narita (2021), "Open Bandit Dataset and Pipeline:
  Towards Realistic and Reproducible Off-Policy Evaluation", NeurIPS Datasets
  and Benchmarks (arXiv:2008.07146).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.resources
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bandits.validation import BanditConfigError, positive_int
from envs.logged import LoggedData

POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
NUM_ITEMS = {"all": 80, "men": 34, "women": 46}
SLATE_SIZE = 3  # positions shown at once (left, centre, right)
USER_FIELDS = tuple(f"user_feature_{k}" for k in range(4))
ITEM_CATEGORICAL = tuple(f"item_feature_{k}" for k in range(1, 4))
CITATION = (
    "Saito, Aihara, Matsutani & Narita (2021), Open Bandit Dataset and Pipeline: "
    "Towards Realistic and Reproducible Off-Policy Evaluation, arXiv:2008.07146"
)
LICENCE = "Apache-2.0 (envs/data/obd/LICENSE-Apache-2.0.txt)"


# ---------------------------------------------------------------------------
# Files


def data_dir() -> Path:
    """The folder of the shipped sample (`envs/data/obd`)."""
    return Path(str(importlib.resources.files("envs").joinpath("data", "obd")))


def _root(root: str | os.PathLike | None) -> Path:
    return data_dir() if root is None else Path(root)


def _choice(field: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise BanditConfigError.about(
            field, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}"
        )
    return value


def log_path(policy: str, campaign: str, root: str | os.PathLike | None = None):
    """The gzipped CSV of one policy's logs on one campaign."""
    _choice("policy", policy, POLICIES)
    _choice("campaign", campaign, CAMPAIGNS)
    return _root(root) / policy / campaign / f"{campaign}.csv.gz"


def verify(root: str | os.PathLike | None = None) -> list[str]:
    """Checks every file listed in `SHA256SUMS` against its SHA-256.

    Returns:
      The checked paths, relative to the folder.

    Raises:
      BanditConfigError: naming the first file that is missing or differs.
    """
    folder = _root(root)
    sums = folder / "SHA256SUMS"
    if not sums.exists():
        raise BanditConfigError(f"{str(sums)!r} does not exist")
    checked = []
    for number, line in enumerate(sums.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise BanditConfigError(
                f"{str(sums)!r} line {number} is not '<sha256>  <path>': {line!r}"
            )
        name = name.removeprefix("./")
        path = folder / name
        if not path.is_file():
            raise BanditConfigError(f"{str(path)!r} (listed in SHA256SUMS) is missing")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != digest:
            raise BanditConfigError(
                f"{str(path)!r} has SHA-256 {actual}, but SHA256SUMS lists {digest}: "
                "the file is damaged or is not the published sample"
            )
        checked.append(name)
    return checked


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a gzipped CSV file; any reading error names the file."""
    if not path.is_file():
        raise BanditConfigError(
            f"Open Bandit Dataset file {str(path)!r} does not exist"
        )
    try:
        with gzip.open(path, "rt", newline="") as text:
            rows = list(csv.reader(text))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise BanditConfigError(
            f"{str(path)!r} is not a readable gzipped CSV file: {error}"
        ) from None
    if not rows:
        raise BanditConfigError(f"{str(path)!r} is empty")
    header, body = rows[0], [r for r in rows[1:] if r]
    bad = [i for i, r in enumerate(body) if len(r) != len(header)]
    if bad:
        raise BanditConfigError(
            f"{str(path)!r} row {bad[0]} has {len(body[bad[0]])} fields, the header "
            f"{len(header)}"
        )
    if not body:
        raise BanditConfigError(f"{str(path)!r} holds no rows")
    return header, body


class _Table:
    """Columns of one CSV file by name, parsed with errors that name the file,
    the column and the row."""

    def __init__(self, path: Path):
        self.path = path
        self.header, self.rows = _read_csv(path)
        self.index = {name: i for i, name in enumerate(self.header)}

    def __len__(self) -> int:
        return len(self.rows)

    def strings(self, name: str) -> list[str]:
        if name not in self.index:
            raise BanditConfigError(
                f"{str(self.path)!r} has no column {name!r}; it starts with "
                f"{', '.join(self.header[:8])}"
            )
        i = self.index[name]
        return [row[i] for row in self.rows]

    def numbers(self, name: str, dtype) -> np.ndarray:
        values = self.strings(name)
        kind = int if np.issubdtype(dtype, np.integer) else float
        try:  # the fast path; on failure, find and name the bad row
            out = np.asarray(values).astype(np.float64 if kind is float else np.int64)
            if kind is int or np.isfinite(out).all():
                return out.astype(dtype)
        except ValueError:
            pass
        out = np.empty(len(values), dtype)
        for row, value in enumerate(values):
            try:
                number = kind(value)
            except ValueError:
                raise BanditConfigError(
                    f"{str(self.path)!r} column {name!r} row {row} is {value!r}, "
                    f"not {'an integer' if kind is int else 'a number'}"
                ) from None
            if kind is float and not math.isfinite(number):
                raise BanditConfigError(
                    f"{str(self.path)!r} column {name!r} row {row} is {value!r}, "
                    "not a finite number"
                )
            out[row] = number
        return out

    def matrix(self, names: Sequence[str], dtype) -> np.ndarray:
        """(n, len(names)) float columns at once; a bad value is named by
        `numbers`."""
        for name in names:
            if name not in self.index:
                self.strings(name)  # raises, naming the column
        columns = [self.index[name] for name in names]
        try:
            out = np.asarray([[row[i] for i in columns] for row in self.rows])
            out = out.astype(np.float64)
            if np.isfinite(out).all():
                return out.astype(dtype)
        except ValueError:
            pass
        return np.stack([self.numbers(name, dtype) for name in names], axis=1)


def _refuse(path: Path, column: str, bad: np.ndarray, values, what: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = np.asarray(values[row]).item()
        raise BanditConfigError(
            f"{str(path)!r} column {column!r} row {row} is {value!r}, not {what}"
        )


# ---------------------------------------------------------------------------
# Items and users


def _one_hot(values: Sequence[str], categories: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(categories)}
    codes = np.asarray([index[v] for v in values], np.int64)
    return np.eye(len(categories), dtype=np.float32)[codes]


def item_features(
    campaign: str, policy: str = "random", root: str | os.PathLike | None = None
) -> tuple[np.ndarray, list[str]]:
    """(K, p) item features and their names: item_feature_0, then a one-hot of
    each of item_feature_1..3 with categories in order of first appearance by
    item id (the same features from either policy's copy of the file)."""
    _choice("campaign", campaign, CAMPAIGNS)
    path = _root(root) / _choice("policy", policy, POLICIES) / campaign
    table = _Table(path / "item_context.csv.gz")
    ids = table.numbers("item_id", np.int64)
    num_items = len(ids)
    _refuse(table.path, "item_id", ids != np.arange(num_items), ids, "the row's index")
    blocks = [table.numbers("item_feature_0", np.float32)[:, None]]
    names = ["item_feature_0"]
    for field in ITEM_CATEGORICAL:
        values = table.strings(field)
        categories = list(dict.fromkeys(values))
        blocks.append(_one_hot(values, categories))
        names += [f"{field}={k}" for k in range(len(categories))]
    return np.concatenate(blocks, axis=1), names


def user_categories(
    campaign: str, root: str | os.PathLike | None = None
) -> dict[str, list[str]]:
    """The sorted categories of each user_feature_k over both policies' logs of
    `campaign` (the user features are hashed alike in both)."""
    tables = [_Table(log_path(p, campaign, root)) for p in POLICIES]
    return {
        field: sorted({v for t in tables for v in t.strings(field)})
        for field in USER_FIELDS
    }


# ---------------------------------------------------------------------------
# Logs


def _timestamps(table: _Table) -> np.ndarray:
    values = table.strings("timestamp")
    out = np.empty(len(values), np.float64)
    for row, value in enumerate(values):
        try:
            out[row] = datetime.fromisoformat(value).timestamp()
        except ValueError:
            raise BanditConfigError(
                f"{str(table.path)!r} column 'timestamp' row {row} is {value!r}, "
                "not an ISO date and time"
            ) from None
    return out


def load(
    policy: str = "random",
    campaign: str = "all",
    *,
    root: str | os.PathLike | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> LoggedData:
    """One policy's logs on one campaign as `LoggedData` (layout: module doc).

    Args:
      policy: "random" (uniform logging) or "bts" (Bernoulli Thompson sampling).
      campaign: "all", "men" or "women".
      root: the dataset folder (default: the shipped sample, `data_dir()`), with
        `{policy}/{campaign}/{campaign}.csv.gz` and `item_context.csv.gz`.
      categories: the user-feature vocabulary (`user_categories`); default: both
        policies' logs of the campaign, so their contexts share one encoding.

    Raises:
      BanditConfigError: naming the file (and the column and row) when a file
        is missing, unreadable, lacks a column or holds a value out of range.
    """
    path = log_path(policy, campaign, root)
    table = _Table(path)
    items, item_names = item_features(campaign, policy, root)
    num_items = items.shape[0]
    if categories is None:
        categories = user_categories(campaign, root)
    order = np.argsort(_timestamps(table), kind="stable")
    action, slot, click, propensity = _checked_columns(table, path, num_items)
    context = _context(table, path, categories, num_items)[order]
    n = len(table)
    metadata = _metadata(policy, campaign, num_items, categories, item_names)
    return LoggedData(
        context=context,
        arms=np.broadcast_to(items[None], (n, *items.shape)),
        mask=np.ones((n, num_items), bool),
        history=None,
        history_mask=None,
        action=action[order].astype(np.int32),
        reward=click[order],
        propensity=propensity[order].astype(np.float32),
        action_probs=None,
        expected_rewards=None,
        stream=np.zeros(n, np.int32),
        step=np.arange(n, dtype=np.int32),
        position=(slot[order] - 1).astype(np.int32),
        metadata=metadata,
    )


def _checked_columns(
    table: _Table, path: Path, num_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item, 1-based position, click, propensity) columns, each checked."""
    action = table.numbers("item_id", np.int64)
    _refuse(
        path,
        "item_id",
        (action < 0) | (action >= num_items),
        action,
        f"an item in [0, {num_items}) (item_context.csv.gz has {num_items})",
    )
    slot = table.numbers("position", np.int64)
    _refuse(
        path,
        "position",
        (slot < 1) | (slot > SLATE_SIZE),
        slot,
        f"a position in 1..{SLATE_SIZE}",
    )
    click = table.numbers("click", np.float32)
    _refuse(path, "click", (click != 0) & (click != 1), click, "0 or 1")
    propensity = table.numbers("propensity_score", np.float64)
    _refuse(
        path,
        "propensity_score",
        (propensity <= 0) | (propensity > 1),
        propensity,
        "in (0, 1]",
    )
    return action, slot, click, propensity


def _context(
    table: _Table,
    path: Path,
    categories: Mapping[str, Sequence[str]],
    num_items: int,
) -> np.ndarray:
    """(n, u + K) one-hot user categories then the user-item affinities, in
    file order."""
    user_blocks = []
    for field in USER_FIELDS:
        values = table.strings(field)
        known = set(categories.get(field, ()))
        unknown = [row for row, v in enumerate(values) if v not in known]
        if unknown:
            raise BanditConfigError(
                f"{str(path)!r} column {field!r} row {unknown[0]} holds a category "
                "outside the given vocabulary"
            )
        user_blocks.append(_one_hot(values, categories[field]))
    affinity = table.matrix(
        [f"user-item_affinity_{k}" for k in range(num_items)], np.float32
    )
    return np.concatenate([*user_blocks, affinity], axis=1)


def _metadata(
    policy: str,
    campaign: str,
    num_items: int,
    categories: Mapping[str, Sequence[str]],
    item_names: Any,
) -> dict[str, Any]:
    """What `LoggedData.metadata` records about a loaded log."""
    return {
        "source": "Open Bandit Dataset (small sample)",
        "policy": policy,
        "campaign": campaign,
        "file": f"{policy}/{campaign}/{campaign}.csv.gz",
        "num_items": num_items,
        "slate_size": SLATE_SIZE,
        "position": "0-based slot (the file's 1, 2, 3: left, centre, right)",
        "propensity": "pi_0(item | position), per position",
        "context_fields": [
            *[[field, len(categories[field])] for field in USER_FIELDS],
            ["user-item_affinity", num_items],
        ],
        "user_categories": {f: list(categories[f]) for f in USER_FIELDS},
        "item_features": item_names,
        "licence": LICENCE,
        "citation": CITATION,
    }


def user_features(data: LoggedData) -> np.ndarray:
    """(n, u) the one-hot user categories of a loaded log (its context without
    the affinities)."""
    return data.context[:, : data.context.shape[1] - data.mask.shape[1]]


def affinities(data: LoggedData) -> np.ndarray:
    """(n, K) the user-item affinities of a loaded log."""
    return data.context[:, data.context.shape[1] - data.mask.shape[1] :]


def pair_features(data: LoggedData, position: np.ndarray | None = None) -> np.ndarray:
    """(n, K, f) features of every (impression, item) pair at a slot: the user's
    one-hot categories, the user's affinity to that item, the item's features and
    a one-hot of the slot (`position`, default the logged one). What a shared
    reward model (`bandits.offline.logistic_model(shared=True)`) reads."""
    n, num_items = data.mask.shape
    slot = data.position if position is None else np.asarray(position)
    if slot is None:
        raise BanditConfigError.about("position", "is needed (the logs have none)")
    users = user_features(data)
    blocks = [
        np.broadcast_to(users[:, None, :], (n, num_items, users.shape[1])),
        affinities(data)[:, :, None],
        np.asarray(data.arms),
        np.broadcast_to(
            np.eye(SLATE_SIZE, dtype=np.float32)[slot][:, None, :],
            (n, num_items, SLATE_SIZE),
        ),
    ]
    return np.concatenate(blocks, axis=2).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------
# The BTS logging policy


def bts_prior(
    campaign: str, root: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """BTS's Beta(alpha, beta) per item on `campaign`, from `prior_bts.yaml`
    (read with `yaml.safe_load`: plain data only)."""
    import yaml

    _choice("campaign", campaign, CAMPAIGNS)
    path = _root(root) / "prior_bts.yaml"
    if not path.is_file():
        raise BanditConfigError(f"{str(path)!r} does not exist")
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise BanditConfigError(
            f"{str(path)!r} is not a readable YAML file: {error}"
        ) from None
    entry = document.get(campaign) if isinstance(document, Mapping) else None
    if not isinstance(entry, Mapping):
        raise BanditConfigError(
            f"{str(path)!r} has no mapping for campaign {campaign!r}"
        )
    out = []
    for field in ("alpha", "beta"):
        values = entry.get(field)
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise BanditConfigError(
                f"{str(path)!r} {campaign}.{field} must be a list of numbers"
            )
        array = np.asarray(values, np.float64)
        if array.shape != (NUM_ITEMS[campaign],) or not np.all(
            np.isfinite(array) & (array > 0)
        ):
            raise BanditConfigError(
                f"{str(path)!r} {campaign}.{field} must hold {NUM_ITEMS[campaign]} "
                f"positive numbers, got {array.size}"
            )
        out.append(array)
    return out[0], out[1]


def bts_position_probs(
    alpha,
    beta,
    *,
    seed: int = 0,
    draws: int = 1_000_000,
    slate_size: int = SLATE_SIZE,
    batch: int = 50_000,
) -> np.ndarray:
    """P(item k at slot l) under Bernoulli Thompson sampling, (K, L), float64.

    Each round draws theta_k ~ Beta(alpha_k, beta_k) for every item, ranks the
    items by theta and shows the top L in slots 0..L-1; the probability is the
    frequency over `draws` rounds (NumPy's generator seeded with `seed`, in
    batches of `batch` rounds). Every column sums to 1 exactly; the Monte Carlo
    error of a probability p is sqrt(p (1 - p) / draws), at most
    1 / (2 sqrt(draws)) (0.0005 at the default 10^6 draws). NumPy rather than
    `jax.random.beta`: its Beta sampler is several times faster on a CPU, and
    this runs once per campaign.
    """
    draws = positive_int("draws", draws)
    batch = min(positive_int("batch", batch), draws)
    slate_size = positive_int("slate_size", slate_size)
    alpha = np.asarray(alpha, np.float64)
    beta = np.asarray(beta, np.float64)
    num_items = alpha.shape[0]
    if alpha.shape != (num_items,) or beta.shape != (num_items,):
        raise BanditConfigError.about(
            "beta", f"must have alpha's shape {alpha.shape}, got {beta.shape}"
        )
    if not 0 < slate_size <= num_items:
        raise BanditConfigError.about(
            "slate_size", f"must be at most the {num_items} items"
        )
    rng = np.random.default_rng(seed)
    counts = np.zeros((num_items, slate_size), np.int64)
    for first in range(0, draws, batch):
        theta = rng.beta(alpha, beta, size=(min(batch, draws - first), num_items))
        top = np.argpartition(-theta, slate_size - 1, axis=1)[:, :slate_size]
        ranked = np.argsort(-np.take_along_axis(theta, top, axis=1), axis=1)
        top = np.take_along_axis(top, ranked, axis=1)  # items by slot
        for slot in range(slate_size):
            counts[:, slot] += np.bincount(top[:, slot], minlength=num_items)
    return counts / draws


__all__ = [
    "CAMPAIGNS",
    "CITATION",
    "NUM_ITEMS",
    "POLICIES",
    "SLATE_SIZE",
    "affinities",
    "bts_position_probs",
    "bts_prior",
    "data_dir",
    "item_features",
    "load",
    "log_path",
    "pair_features",
    "user_categories",
    "user_features",
    "verify",
]
