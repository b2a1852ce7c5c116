"""Pretraining the transformer policy on logged events, checkpoints and metrics.

The reward model of `agents.transformer` is fitted to logged events
(x_i, a_i, r_i, pi_0(a_i | x_i)) by minimising

    L(theta) = (1/n) sum_i w_i l(z_theta(x_i)_{a_i}, r_i)
             + beta (1/m) sum_{i in M} ||g_theta(x~_i)_{j_i} - y_{i, j_i}||^2 / p_h

  * l is the binary cross-entropy of the logged action's click logit;
  * w_i = min(u_i / pi_0(a_i | x_i), w_max), u_i = 1 / |allowed(x_i)|, the
    inverse-propensity weight that makes the logged action distribution look
    uniform (clipped at w_max), or w_i = 1 with `ips=False`. Under a uniform
    logger w_i = 1 and both losses agree;
  * the second term is masked-history prediction (BERT4Rec-style): for a random
    subset M of the events (probability `mask_probability`) one valid history
    row j_i is replaced by a learned mask token in the input x~_i and its
    features and click y_{i, j_i} are reconstructed from that token's output.
    Those events' click loss is computed on the masked input too (a form of
    history dropout).

Training is Adam on shuffled mini-batches, several compiled steps per call (a
`scan`), with a progress bar and a loss curve. Checkpoints are `.npz` files
holding the architecture (JSON) and every parameter under its path (no pickle);
they round-trip bit for bit.

`prediction_metrics` scores predicted click probabilities against held-out
clicks: accuracy, precision, recall, F1 (at a threshold), ROC-AUC, log-loss and
MSE (Brier score), and MSE against the simulator's exact click probabilities
where the data has them.

References:
  Strehl, Langford, Li & Kakade (2010), "Learning from logged implicit
  exploration data", NeurIPS (inverse-propensity weighting, clipped weights).
  Sun et al. (2019), "BERT4Rec: sequential recommendation with bidirectional
  encoder representations from transformer", CIKM (masked item prediction).
  Fawcett (2006), "An introduction to ROC analysis", Pattern Recognition
  Letters (the rank statistic behind ROC-AUC).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from agents import checkpoints, resumable
from agents.transformer_model import (
    TransformerConfig,
    binary_cross_entropy,
    build_model,
    split_model,
)
from agents.warm_start import REPLAY_COLUMNS, as_events
from bandits import metrics
from bandits.types import Observation
from bandits.validation import BanditConfigError, positive_int, real

CONFIG_KEY = "config"
TRAIN_COLUMNS = (*REPLAY_COLUMNS, "propensity")


# ---------------------------------------------------------------------------
# Losses


def ips_weights(propensity: jax.Array, mask: jax.Array, max_weight: float) -> jax.Array:
    """w_i = min(1 / (|allowed_i| pi_0(a_i | x_i)), w_max), (n,).

    Args:
      propensity: (n,) logged propensities pi_0(a_i | x_i) > 0.
      mask: (n, K) allowed arms.
      max_weight: the clip w_max > 0.
    """
    allowed = jnp.sum(mask.astype(jnp.float32), axis=-1)
    return jnp.minimum(1.0 / (allowed * propensity), max_weight)


def _history_targets(key, history_mask, probability):
    """One valid history row per event, masked with `probability`: (n, H) 0/1."""
    key_row, key_use = jax.random.split(key)
    n, H = history_mask.shape
    scores = jnp.where(history_mask, jax.random.uniform(key_row, (n, H)), -1.0)
    row = jax.nn.one_hot(jnp.argmax(scores, axis=1), H)
    use = (jax.random.uniform(key_use, (n,)) < probability) & jnp.any(
        history_mask, axis=1
    )
    return row * use[:, None].astype(jnp.float32)


def pretrain_loss(
    key: jax.Array,
    graphdef,
    params,
    batch: Mapping[str, jax.Array],
    *,
    ips: bool = True,
    max_weight: float = 20.0,
    ssl_weight: float = 0.1,
    mask_probability: float = 0.5,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """The pretraining loss of a mini-batch (see the module docstring).

    Args:
      key: PRNG key for the history masking.
      graphdef: the model's static graph.
      params: the model's parameters.
      batch: arrays with a leading batch axis B: "context", "arms", "mask",
        "history", "history_mask" (if the model reads history), "action",
        "reward", "propensity".
      ips: weight the click loss by clipped inverse propensities.
      max_weight: the clip w_max.
      ssl_weight: beta, weight of the masked-history term (0: off).
      mask_probability: share of events that get one history row masked.

    Returns:
      `(loss, (click_loss, history_loss))`.
    """
    model = nnx.merge(graphdef, params)
    cfg = model.cfg
    use_history = cfg.history_length > 0 and ssl_weight > 0
    if use_history:
        token_mask = _history_targets(key, batch["history_mask"], mask_probability)
    else:
        del key
        token_mask = None

    def one(obs, token_mask):
        phi, history_out = model.encode(obs, token_mask)
        logit = model.score(phi, obs)
        recon = model.history_head(history_out) if use_history else None
        return logit, recon

    obs = Observation(
        context=batch["context"],
        arms=batch["arms"],
        mask=batch["mask"],
        history=batch.get("history") if cfg.history_length else None,
        history_mask=batch.get("history_mask") if cfg.history_length else None,
    )
    logit, recon = jax.vmap(one)(obs, token_mask)
    taken = jnp.take_along_axis(logit, batch["action"][:, None], axis=1)[:, 0]
    losses = binary_cross_entropy(taken, batch["reward"])
    if ips:
        w = ips_weights(batch["propensity"], batch["mask"], max_weight)
    else:
        w = jnp.ones_like(losses)
    click = jnp.mean(w * losses)
    if not use_history:
        return click, (click, jnp.zeros(()))
    target = batch["history"]
    per_row = jnp.mean((recon - target) ** 2, axis=-1)  # (B, H)
    masked = jnp.sum(token_mask, axis=1)  # (B,) 0 or 1
    history = jnp.sum(token_mask * per_row) / jnp.maximum(jnp.sum(masked), 1.0)
    return click + ssl_weight * history, (click, history)


# ---------------------------------------------------------------------------
# Training


class PretrainResult(NamedTuple):
    """What `pretrain` returns."""

    config: TransformerConfig
    params: Any  # nnx.State of the trained model
    losses: np.ndarray  # (steps,)  total loss per step
    click_losses: np.ndarray  # (steps,)
    history_losses: np.ndarray  # (steps,)
    seconds: float
    ips: bool = True  # whether the click loss was IPS-weighted


def pretrain(
    key: jax.Array,
    cfg: TransformerConfig,
    data: Any,
    *,
    epochs: int = 2,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    ips: bool = True,
    max_weight: float = 20.0,
    ssl_weight: float = 0.1,
    mask_probability: float = 0.5,
    steps_per_call: int = 50,
    params: Any = None,
    progress: bool = True,
    resume: str | os.PathLike | None = None,
) -> PretrainResult:
    """Fits the transformer to logged events (see the module docstring).

    Args:
      key: PRNG key (initialisation, shuffling, masking).
      cfg: the architecture (float32; `quantization` must be "none").
      data: logged events: an `envs.logged.LoggedData`, a mapping of column
        arrays or a path to a logged-data Parquet file.
      epochs: passes over the data.
      batch_size: events per Adam step.
      learning_rate: Adam step size (cosine-decayed to 10% over training).
      ips: weight the click loss by clipped inverse propensities.
      max_weight: the IPS clip w_max.
      ssl_weight: beta, weight of the masked-history objective (0: off).
      mask_probability: share of events with a masked history row.
      steps_per_call: Adam steps per compiled call.
      params: parameters to continue from (default: a fresh initialisation).
      progress: show a progress bar.
      resume: a file for the training's progress (`agents.resumable`): saved
        every 30 s, and a call with the same arguments and data continues from
        it to the same result; the caller deletes it once the result is kept.

    Returns:
      A `PretrainResult` with the trained parameters and the loss curves
      (`seconds` includes the interrupted calls' training time).
    """
    if cfg.quantization != "none":
        raise BanditConfigError("pretrain needs a float model (quantization='none')")
    options = check_options(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_weight=max_weight,
        ssl_weight=ssl_weight,
        mask_probability=mask_probability,
        steps_per_call=steps_per_call,
    )
    epochs, batch_size = options["epochs"], options["batch_size"]
    columns = _training_columns(data, cfg)
    n = len(columns["action"])
    if n < batch_size:
        raise BanditConfigError.about(
            "batch_size",
            f"must be <= the number of logged events ({n}), got {batch_size}",
        )
    key_init, key_train = jax.random.split(key)
    graphdef, fresh = nnx.split(build_model(cfg, key_init))
    params = fresh if params is None else params
    total = epochs * (n // batch_size)
    schedule = optax.cosine_decay_schedule(learning_rate, max(total, 1), alpha=0.1)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    loss = ("max_weight", "ssl_weight", "mask_probability")
    loss_options = {"ips": ips, **{k: options[k] for k in loss}}
    run_steps = _training_program(graphdef, optimizer, loss_options)
    start = None if params is fresh else params  # given parameters, by checksum
    settings = _resume_settings(resume, key, cfg, options, loss_options, columns, start)
    params, (losses, clicks, histories), seconds = _run_epochs(
        key_train,
        run_steps,
        (params, optimizer.init(params)),
        columns,
        epochs=epochs,
        batch_size=batch_size,
        steps_per_call=options["steps_per_call"],
        progress=progress,
        saved=resumable.Progress(resume, settings),
    )
    return PretrainResult(
        config=cfg,
        params=params,
        losses=losses,
        click_losses=clicks,
        history_losses=histories,
        seconds=seconds,
        ips=ips,
    )


def _resume_settings(resume, key, cfg, options, loss_options, columns, params) -> dict:
    """What a pretraining run's result depends on (the data and any starting
    parameters by checksum): a progress file is resumed only with these (none
    without a progress file)."""
    if resume is None:
        return {}
    return {
        "training": "agents.pretrain",
        "config": cfg.to_json(),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "epochs": options["epochs"],
        "batch_size": options["batch_size"],
        "learning_rate": options["learning_rate"],
        "loss": loss_options,
        "steps_per_call": options["steps_per_call"],
        "data": resumable.digest(columns),
        "params": None if params is None else resumable.digest(params),
    }


def check_options(
    *,
    epochs: int = 2,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    max_weight: float = 20.0,
    ssl_weight: float = 0.1,
    mask_probability: float = 0.5,
    steps_per_call: int = 50,
) -> dict[str, Any]:
    """`pretrain`'s training options checked (a `BanditConfigError` naming the
    option for a bad one); returns them, the counts as ints. A config that sets
    them calls this before any compute, so `pretrain` finds them valid."""
    real("learning_rate", learning_rate, low=0.0, low_open=True)
    real("max_weight", max_weight, low=0.0, low_open=True)
    real("ssl_weight", ssl_weight, low=0.0)
    real("mask_probability", mask_probability, low=0.0, high=1.0)
    return {
        "epochs": positive_int("epochs", epochs),
        "batch_size": positive_int("batch_size", batch_size),
        "learning_rate": learning_rate,
        "max_weight": max_weight,
        "ssl_weight": ssl_weight,
        "mask_probability": mask_probability,
        "steps_per_call": positive_int("steps_per_call", steps_per_call),
    }


def _training_program(graphdef, optimizer, loss_options: Mapping[str, Any]):
    """The jitted `run_steps(params, opt_state, keys, batches)`: one Adam step per
    (key, batch) under `scan`, returning the per-step (loss, click, history)."""

    def step(carry, inputs):
        params, opt_state = carry
        key_step, batch = inputs
        (loss, parts), grads = jax.value_and_grad(
            lambda p: pretrain_loss(key_step, graphdef, p, batch, **loss_options),
            has_aux=True,
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, *parts)

    @jax.jit
    def run_steps(params, opt_state, keys, batches):
        return jax.lax.scan(step, (params, opt_state), (keys, batches))

    return run_steps


def _run_epochs(
    key: jax.Array,
    run_steps,
    carry: tuple[Any, Any],
    columns: Mapping[str, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    steps_per_call: int,
    progress: bool,
    saved: resumable.Progress,
) -> tuple[Any, tuple[np.ndarray, ...], float]:
    """`epochs` shuffled passes, `steps_per_call` Adam steps per compiled call,
    resumed from `saved` where it holds this training's progress.

    Returns the trained parameters, the (loss, click, history) curves, (steps,),
    and the training's seconds.
    """
    n = len(columns["action"])
    steps_per_epoch = n // batch_size
    total = epochs * steps_per_epoch
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    step_keys = jax.random.split(key, max(total, 1))

    def calls():
        done = 0
        for _ in range(epochs):  # every epoch's order is drawn, skipped or not
            order = rng.permutation(n)[: steps_per_epoch * batch_size]
            order = order.reshape(steps_per_epoch, batch_size)
            for first in range(0, steps_per_epoch, steps_per_call):
                index = order[first : first + steps_per_call]
                yield len(index), _batch_of(columns, index, step_keys, done)
                done += len(index)

    def run(carry, keys, batches):
        return run_steps(carry[0], carry[1], keys, batches)

    with _ProgressBar(progress, total) as bar:
        (params, _), curves, seconds = resumable.run_calls(
            run,
            carry,
            calls(),
            saved,
            curves=3,
            report=lambda done, losses: bar(done, float(np.mean(losses))),
        )
    return params, tuple(curves), seconds


def _batch_of(columns, index, step_keys, done):
    """The arguments of one call (assembled only if the call runs)."""
    return lambda: (
        step_keys[done : done + len(index)],
        {name: value[index] for name, value in columns.items()},
    )


def _training_columns(data: Any, cfg: TransformerConfig) -> dict[str, np.ndarray]:
    names = (
        TRAIN_COLUMNS if cfg.history_length else TRAIN_COLUMNS[:3] + TRAIN_COLUMNS[5:]
    )
    events = as_events(data, names)
    shapes = {
        "context": (cfg.context_dim,),
        "arms": (cfg.num_arms, cfg.arm_columns),
        "history": (cfg.history_length, cfg.history_features),
    }
    for name, shape in shapes.items():
        if name in events and events[name].shape[1:] != shape:
            raise BanditConfigError(
                f"logged column {name!r} has per-event shape "
                f"{events[name].shape[1:]}, the model expects {shape}"
            )
    return events


class _ProgressBar:
    """A rich progress bar over Adam steps showing the latest loss (or nothing)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self._progress = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("pretraining"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("loss {task.fields[loss]}"),
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total, loss="-")
        return self

    def __call__(self, done: int, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, loss=f"{loss:.4f}")

    def __exit__(self, *exc_info):
        if self._progress is not None:
            self._progress.stop()


def plot_losses(result: PretrainResult, path: str | os.PathLike) -> Path:
    """Saves the loss curves (per step and a moving average) as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    window = max(len(result.losses) // 50, 1)
    kernel = np.ones(window) / window
    for label, curve in (
        ("total", result.losses),
        ("click (IPS-weighted)" if result.ips else "click", result.click_losses),
        ("masked history", result.history_losses),
    ):
        if np.any(curve):
            smooth = np.convolve(curve, kernel, mode="valid")
            ax.plot(np.arange(len(smooth)) + window, smooth, label=label)
    ax.set_xlabel("Adam step")
    ax.set_ylabel(f"loss (moving average of {window})")
    ax.set_title("Pretraining loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------
# Held-out evaluation


def predict_logged(graphdef, params, data: Any, batch_size: int = 1024) -> np.ndarray:
    """Predicted click probability of each logged action, (n,)."""
    model_cfg = nnx.merge(graphdef, params).cfg
    columns = _training_columns(data, model_cfg)

    @jax.jit
    def batch_probs(batch):
        def one(context, arms, mask, history, history_mask, action):
            obs = Observation(context, arms, mask, history, history_mask)
            return jax.nn.sigmoid(nnx.merge(graphdef, params)(obs)[action])

        return jax.vmap(one)(
            batch["context"],
            batch["arms"],
            batch["mask"],
            batch.get("history"),
            batch.get("history_mask"),
            batch["action"],
        )

    n = len(columns["action"])
    out = np.empty((n,), np.float32)
    for first in range(0, n, batch_size):
        index = np.arange(first, min(first + batch_size, n))
        padded = np.resize(index, batch_size)  # one compiled shape
        batch = {k: v[padded] for k, v in columns.items() if k != "propensity"}
        out[index] = np.asarray(batch_probs(batch))[: len(index)]
    return out


def prediction_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    expected: np.ndarray | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Classification and calibration metrics of predicted click probabilities.

    Args:
      labels: (n,) observed clicks in {0, 1}.
      probabilities: (n,) predicted P(click).
      expected: optional (n,) exact click probabilities (simulated data only).
      threshold: predicted label = probability >= threshold.

    Returns:
      accuracy, precision, recall, f1 (0 where undefined: no predicted or no
      actual positives), roc_auc (NaN with one class), log_loss (probabilities
      clipped to [1e-7, 1 - 1e-7]; both from `bandits.metrics`), mse (Brier
      score against the clicks), base_rate, and mse_expected (against
      `expected`) when given.
    """
    y = np.asarray(labels, np.float64)
    p = np.asarray(probabilities, np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise BanditConfigError(
            f"labels and probabilities must be equal-length 1-D arrays, got "
            f"{y.shape} and {p.shape}"
        )
    predicted = p >= threshold
    actual = y >= 0.5
    tp = float(np.sum(predicted & actual))
    fp = float(np.sum(predicted & ~actual))
    fn = float(np.sum(~predicted & actual))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out = {
        "accuracy": float(np.mean(predicted == actual)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": metrics.roc_auc(actual, p),
        "log_loss": metrics.log_loss(y, p),
        "mse": float(np.mean((p - y) ** 2)),
        "base_rate": float(np.mean(y)),
    }
    if expected is not None:
        out["mse_expected"] = float(
            np.mean((p - np.asarray(expected, np.float64)) ** 2)
        )
    return out


# ---------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(
    path: str | os.PathLike, cfg: TransformerConfig, params: Any
) -> Path:
    """Writes the architecture and every parameter to an `.npz` (no pickle).

    Keys: "config" (the architecture as JSON) and "param:<path>" per array, e.g.
    "param:blocks/0/attention/qkv/kernel" (`agents.checkpoints`). Written
    atomically.
    """
    return checkpoints.write(path, {CONFIG_KEY: cfg.to_json()}, params)


def load_checkpoint(path: str | os.PathLike) -> tuple[TransformerConfig, Any]:
    """Reads a checkpoint written by `save_checkpoint`: `(config, params)`.

    The archive's table of contents is checked against the architecture it
    declares before any parameter is decompressed: a member larger than its
    parameter needs is refused (a small file cannot expand to gigabytes).

    Raises:
      BanditConfigError: if the file is missing, is not such a checkpoint, cannot
        be read, or its parameters do not match the architecture it declares.
    """
    path = Path(path)
    sizes = checkpoints.member_sizes(path, "a transformer")
    text = checkpoints.read_text(path, sizes, CONFIG_KEY, "a transformer")
    try:
        cfg = TransformerConfig.from_json(text)
    except (ValueError, KeyError, TypeError) as err:
        raise checkpoints.unreadable(path, err) from None
    _, template = split_model(cfg)
    return cfg, checkpoints.read_params(path, sizes, template)


__all__ = [
    "PretrainResult",
    "ips_weights",
    "load_checkpoint",
    "plot_losses",
    "predict_logged",
    "prediction_metrics",
    "pretrain",
    "pretrain_loss",
    "save_checkpoint",
]
