"""Networks for neural bandits: an NNX MLP, input forms, and mini-batch fitting.

The MLP is a Flax NNX module built once by the agent factory and split at the agent
boundary (`graphdef, params = nnx.split(model, nnx.Param)`); agents keep `params` and
the `optax` state in their own state and call `nnx.merge` inside pure functions.

Three input forms decide how a round's observation becomes network inputs:

  * "context" (multi-head): f(x) in R^K from the shared context x (d,); the score of
    arm k is f(x)_k and every arm shares the last hidden layer phi(x). This is the
    network of Riquelme et al. (2018).
  * "disjoint": one scalar output on x_k = e_k (x) x (d K,), the k-th block holding
    x and the rest zeros; the encoding of Zhou et al. (2020) and Zhang et al. (2021).
  * "arms" (per-candidate): one scalar output on the arm's own features a_k (p,).

The training options of every neural agent are one frozen `TrainConfig`, which
`setup_training` validates into a `Setup` (the network, the optimiser and the
integer schedule). A replay item keeps the stored input `x` (the context, or the
chosen arm's features for "arms"), the action and the reward; `predict_taken`
rebuilds the network input.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from agents.registry import DeclaredShapes, declared_shapes
from agents.replay import (
    ReplayBuffer,
    capacity_of,
    maybe,
    replay_init,
    replay_push,
    replay_sample,
    replay_valid,
    should_train,
)
from bandits.types import Observation
from bandits.validation import (
    BanditConfigError,
    choice,
    non_negative_int,
    positive_int,
    real,
)

INPUT_FORMS = ("context", "disjoint", "arms")
Params = Any


class MLP(nnx.Module):
    """A ReLU multilayer perceptron: x -> phi(x) -> W phi(x) + b.

    Attributes:
      hidden: the hidden `nnx.Linear` layers (may be empty: phi(x) = x).
      head: the output layer.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        *,
        rngs: nnx.Rngs,
    ):
        sizes = (in_features, *hidden_sizes)
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )
        self.head = nnx.Linear(sizes[-1], out_features, rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        """The last hidden layer phi(x)."""
        for layer in self.hidden:
            x = nnx.relu(layer(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.embed(x))


def hidden_sizes_of(value: Any) -> tuple[int, ...]:
    """`hidden_sizes` as a tuple of positive ints (an int means one layer)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = (value,)
    try:
        sizes = tuple(value)
    except TypeError:
        raise BanditConfigError.about(
            "hidden_sizes",
            f"must be a positive integer or a list of them, got {value!r}",
        ) from None
    return tuple(positive_int("hidden_sizes", s) for s in sizes)


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """An MLP split once into a static graph and pure functions of its parameters.

    Attributes:
      form: the input form ("context", "disjoint" or "arms").
      num_arms: K.
      dim: d for "context"/"disjoint", p for "arms".
      hidden_sizes: widths of the hidden layers.
      graphdef: the static NNX graph of the MLP.
    """

    form: str
    num_arms: int
    dim: int
    hidden_sizes: tuple[int, ...]
    graphdef: Any

    def agent_shapes(self) -> DeclaredShapes:
        """The shape fields of an `Agent` on this network (`declared_shapes`)."""
        return declared_shapes(self.num_arms, self.dim, self.form)

    @property
    def in_features(self) -> int:
        return self.dim * self.num_arms if self.form == "disjoint" else self.dim

    @property
    def out_features(self) -> int:
        return self.num_arms if self.form == "context" else 1

    @property
    def embed_dim(self) -> int:
        """Width of phi: the last hidden layer (the input if there is none)."""
        return self.hidden_sizes[-1] if self.hidden_sizes else self.in_features

    @property
    def num_blocks(self) -> int:
        """Independent last-layer regressions: one per arm for "context", else one."""
        return self.num_arms if self.form == "context" else 1

    def init(self, key: jax.Array) -> Params:
        """Fresh parameters (Lecun-normal kernels, zero biases) from `key`."""
        model = MLP(
            self.in_features,
            self.hidden_sizes,
            self.out_features,
            rngs=nnx.Rngs(params=key),
        )
        return nnx.split(model, nnx.Param)[1]

    def _model(self, params: Params) -> MLP:
        return nnx.merge(self.graphdef, params)

    def stored_input(self, obs: Observation, action: jax.Array) -> jax.Array:
        """What the replay buffer keeps for a round: (d,) context or (p,) arm."""
        if self.form == "arms":
            return obs.arms[action].astype(jnp.float32)
        return obs.context.astype(jnp.float32)

    def _taken_input(self, x: jax.Array, action: jax.Array) -> jax.Array:
        if self.form == "disjoint":
            return jnp.kron(jax.nn.one_hot(action, self.num_arms, dtype=x.dtype), x)
        return x

    def predict_taken(self, params: Params, x: jax.Array, action: jax.Array):
        """f(x, a): the predicted reward of `action` for a stored input, ()."""
        out = self._model(params)(self._taken_input(x, action))
        return out[action] if self.form == "context" else out[0]

    def embed_taken(self, params: Params, x: jax.Array, action: jax.Array):
        """phi of a stored input for `action`, (h,)."""
        return self._model(params).embed(self._taken_input(x, action))

    def _arm_inputs(self, obs: Observation) -> jax.Array:
        if self.form == "arms":
            return obs.arms.astype(jnp.float32)
        x = obs.context.astype(jnp.float32)
        eye = jnp.eye(self.num_arms, dtype=x.dtype)
        return jax.vmap(lambda e: jnp.kron(e, x))(eye)

    def scores(self, params: Params, obs: Observation) -> jax.Array:
        """Predicted reward of every arm, (K,)."""
        model = self._model(params)
        if self.form == "context":
            return model(obs.context.astype(jnp.float32))
        return jax.vmap(model)(self._arm_inputs(obs))[:, 0]

    def embeddings(self, params: Params, obs: Observation) -> jax.Array:
        """phi for every arm, (K, h) (one shared row repeated for "context")."""
        model = self._model(params)
        if self.form == "context":
            phi = model.embed(obs.context.astype(jnp.float32))
            return jnp.broadcast_to(phi, (self.num_arms, phi.shape[0]))
        return jax.vmap(model.embed)(self._arm_inputs(obs))

    def arm_blocks(self) -> jax.Array:
        """Which last-layer regression scores each arm, (K,) int32."""
        if self.form == "context":
            return jnp.arange(self.num_arms, dtype=jnp.int32)
        return jnp.zeros((self.num_arms,), jnp.int32)

    def block_of(self, action: jax.Array) -> jax.Array:
        """The regression block a played `action` feeds, () int32."""
        if self.form == "context":
            return jnp.asarray(action, jnp.int32)
        return jnp.zeros((), jnp.int32)

    def arm_gradients(self, params: Params, obs: Observation) -> Params:
        """Per-arm gradients g_k = d f(x_k; theta) / d theta: leaves (K, ...)."""
        return jax.jacrev(self.scores)(params, obs)

    def layers(self, params: Params) -> list[tuple[jax.Array, jax.Array]]:
        """(kernel (in, out), bias (out,)) of each layer, hidden layers then head.

        Any pytree shaped like the parameters (e.g. a diagonal precision) works."""
        model = self._model(params)
        pairs = []
        for layer in [*model.hidden, model.head]:
            bias = layer.bias
            assert bias is not None  # every layer of `MLP` has a bias
            pairs.append((layer.kernel[...], bias[...]))
        return pairs

    def arm_layer_factors(
        self, params: Params, obs: Observation
    ) -> list[tuple[jax.Array, jax.Array]]:
        """Per layer, the factors of every arm's gradient: (inputs (K, in), deltas
        (K, out)).

        For a layer z = a W + b, the gradient of arm k's score f_k is
        d f_k / d W = a_k (x) delta_k and d f_k / d b = delta_k, with a_k the
        layer's input and delta_k = d f_k / d z for arm k. One forward and one
        backward pass of K rows give all layers, without the (K, #params) array
        of `arm_gradients` (the ReLU derivative is 1[z > 0], as in `jax.nn.relu`).
        """
        layers = self.layers(params)
        if self.form == "context":
            x = obs.context.astype(jnp.float32)
            a = jnp.broadcast_to(x, (self.num_arms, x.shape[0]))
            delta = jnp.eye(self.num_arms, dtype=jnp.float32)
        else:
            a = self._arm_inputs(obs)
            delta = jnp.ones((self.num_arms, 1), jnp.float32)
        inputs, pre_activations = [], []
        for kernel, bias in layers[:-1]:
            inputs.append(a)
            z = a @ kernel + bias
            pre_activations.append(z)
            a = nnx.relu(z)
        inputs.append(a)
        deltas = [delta]
        for (kernel, _), z in zip(
            reversed(layers[1:]), reversed(pre_activations), strict=True
        ):
            delta = jnp.where(z > 0, delta @ kernel.T, 0.0)
            deltas.append(delta)
        return list(zip(inputs, deltas[::-1], strict=True))

    def arm_gradient_norms(
        self, params: Params, obs: Observation, precision_diag: Params
    ) -> jax.Array:
        """sum_j g_kj^2 / Z_j for every arm k, (K,): g_k the gradient of f_k, Z a
        positive diagonal shaped like the parameters.

        Equals the sum over `arm_gradients(params, obs)` (up to float rounding),
        layer by layer as sum_io a_ki^2 delta_ko^2 / Z_io + sum_o delta_ko^2 / Z_o:
        two small matrix products per layer instead of K backward passes.
        """
        total = jnp.zeros((self.num_arms,), jnp.float32)
        factors = self.arm_layer_factors(params, obs)
        for (a, delta), (z_kernel, z_bias) in zip(
            factors, self.layers(precision_diag), strict=True
        ):
            delta2 = delta * delta
            total = total + jnp.sum(((a * a) @ (1.0 / z_kernel)) * delta2, axis=1)
            total = total + delta2 @ (1.0 / z_bias)
        return total

    def taken_gradient(self, params: Params, x: jax.Array, action: jax.Array):
        """g = d f(x, a; theta) / d theta for a stored input: leaves like params."""
        return jax.grad(self.predict_taken)(params, x, action)


def make_network(
    form: str, num_arms: int, dim: int, hidden_sizes: tuple[int, ...]
) -> Network:
    """Builds the MLP once and splits it into (graphdef, params)."""
    choice("features", form, INPUT_FORMS)
    probe = Network(form, num_arms, dim, hidden_sizes, None)
    model = MLP(
        probe.in_features,
        hidden_sizes,
        probe.out_features,
        rngs=nnx.Rngs(params=0),
    )
    graphdef, _ = nnx.split(model, nnx.Param)
    return dataclasses.replace(probe, graphdef=graphdef)


def make_optimizer(learning_rate, max_grad_norm) -> optax.GradientTransformation:
    """Adam on gradients clipped to global norm `max_grad_norm` (0: no clipping)."""
    adam = optax.adam(learning_rate)
    if isinstance(max_grad_norm, int | float) and max_grad_norm == 0:
        return adam
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def check_training(
    learning_rate, train_every, train_steps, batch_size, capacity, max_grad_norm
) -> tuple[int, int, int, int]:
    """Validates the shared training hyperparameters; returns the integer ones."""
    real("learning_rate", learning_rate, low=0.0, low_open=True)
    real("max_grad_norm", max_grad_norm, low=0.0)
    return (
        positive_int("train_every", train_every),
        positive_int("train_steps", train_steps),
        positive_int("batch_size", batch_size),
        positive_int("capacity", capacity),
    )


def squared_error_loss(
    network: Network,
    params: Params,
    params0: Params,
    batch: dict,
    valid: jax.Array,
    weight_decay,
    weights: jax.Array | None = None,
    target_noise: jax.Array | None = None,
) -> jax.Array:
    """Mean of w_i (f(x_i, a_i) - r_i - z_i)^2 + weight_decay ||theta - theta_0||^2.

    `weights` w_i (bootstrap) and `target_noise` z_i (reward perturbation) default
    to 1 and 0; rows with `valid` False carry no weight.
    """
    predictions = jax.vmap(network.predict_taken, in_axes=(None, 0, 0))(
        params, batch["x"], batch["action"]
    )
    targets = (
        batch["reward"] if target_noise is None else batch["reward"] + target_noise
    )
    w = valid.astype(predictions.dtype)
    if weights is not None:
        w = w * weights
    data = jnp.sum(w * (predictions - targets) ** 2) / jnp.maximum(valid.sum(), 1)
    drift = sum(
        jnp.sum((p - p0) ** 2)
        for p, p0 in zip(jax.tree.leaves(params), jax.tree.leaves(params0), strict=True)
    )
    return data + weight_decay * drift


def fit(
    key: jax.Array,
    params: Params,
    opt_state: Any,
    buffer: ReplayBuffer,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable[[Params, dict, jax.Array], jax.Array],
    num_steps: int,
    batch_size: int,
) -> tuple[Params, Any]:
    """`num_steps` mini-batch gradient steps on uniform replay samples, under `scan`.

    Args:
      key: PRNG key for the mini-batches.
      params: network parameters.
      opt_state: the optimizer state.
      buffer: replay buffer of items with at least "x", "action", "reward".
      optimizer: an `optax` transformation.
      loss_fn: `loss_fn(params, batch, valid) -> ()`.
      num_steps: gradient steps (a Python int).
      batch_size: rows per step (a Python int).

    Returns:
      Updated `(params, opt_state)`.
    """

    def step(carry, key_step):
        params, opt_state = carry
        batch, valid = replay_sample(key_step, buffer, batch_size)
        grads = jax.grad(loss_fn)(params, batch, valid)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    keys = jax.random.split(key, num_steps)
    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), keys)
    return params, opt_state


def fit_full_batch(
    network: Network,
    params0: Params,
    buffer: ReplayBuffer,
    learning_rate,
    regularization,
    num_steps: int,
) -> Params:
    """TrainNN of Zhou et al. (2020) and Zhang et al. (2021): gradient descent.

    Starting from theta^(0) = theta_0, `num_steps` (J) steps of plain gradient
    descent on every stored round of the papers' objective

        L(theta) = sum_i (f(x_i, a_i; theta) - r_i)^2 / 2
                   + m lambda ||theta - theta_0||^2 / 2,

    with m the width of the last hidden layer and lambda = `regularization`,
    with step size eta / n: eta = `learning_rate`, n the number of stored rounds.
    A fixed step on the summed loss diverges as n grows (the curvature grows with
    n and is at least m lambda); eta / n is the step the papers' reference code
    takes (mean squared error, weight decay lambda / n), and leaves the minimiser
    of L unchanged.
    """
    m = network.embed_dim
    valid = replay_valid(buffer).astype(jnp.float32)
    step_size = learning_rate / jnp.maximum(jnp.sum(valid), 1.0)
    items = buffer.items

    def loss(params):
        predictions = jax.vmap(network.predict_taken, in_axes=(None, 0, 0))(
            params, items["x"], items["action"]
        )
        data = 0.5 * jnp.sum(valid * (predictions - items["reward"]) ** 2)
        drift = sum(
            jnp.sum((p - p0) ** 2)
            for p, p0 in zip(
                jax.tree.leaves(params), jax.tree.leaves(params0), strict=True
            )
        )
        return data + 0.5 * m * regularization * drift

    def step(params, _):
        grads = jax.grad(loss)(params)
        return jax.tree.map(lambda p, g: p - step_size * g, params, grads), None

    return jax.lax.scan(step, params0, None, length=num_steps)[0]


def fit_sgd_until_small(
    key: jax.Array,
    network: Network,
    params: Params,
    buffer: ReplayBuffer,
    learning_rate,
    weight_decay,
    max_steps: int = 1000,
    tolerance: float = 1e-3,
) -> Params:
    """The training of NeuralUCB's reference code (Zhou et al. 2020,
    `learner_diag.py`): from the current parameters, plain SGD on one stored
    round at a time of (f(x_i, a_i) - r_i)^2 with weight decay (the gradient
    plus `weight_decay` theta, toward 0), sweeping the stored rounds in one
    random order, until a sweep's mean loss is at most `tolerance` or
    `max_steps` single-round steps have been taken."""
    items = buffer.items
    count = jnp.maximum(buffer.size, 1)
    # The filled rows in a random order, then the empty ones.
    draw = jax.random.uniform(key, (capacity_of(buffer),))
    order = jnp.argsort(jnp.where(replay_valid(buffer), draw, 2.0))

    def loss(params, row):
        x, action, reward = items["x"][row], items["action"][row], items["reward"][row]
        return (network.predict_taken(params, x, action) - reward) ** 2

    def running(carry):
        _, steps, _, _, done = carry
        return (steps < max_steps) & ~done

    def one_round(carry):
        params, steps, position, sweep_loss, _ = carry
        value, grads = jax.value_and_grad(loss)(params, order[position])
        params = jax.tree.map(
            lambda p, g: p - learning_rate * (g + weight_decay * p), params, grads
        )
        sweep_loss = sweep_loss + value
        end = position + 1 >= count
        done = end & (sweep_loss / count <= tolerance)
        position = jnp.where(end, 0, position + 1)
        sweep_loss = jnp.where(end, 0.0, sweep_loss)
        return params, steps + 1, position, sweep_loss, done

    zero = jnp.zeros((), jnp.int32)
    start = (params, zero, zero, jnp.zeros((), jnp.float32), jnp.zeros((), bool))
    return jax.lax.while_loop(running, one_round, start)[0]


def forced_pull(step: jax.Array, initial_pulls: int, num_arms: int, action, mask):
    """Round-robin arm `step mod K` during the first `initial_pulls * K` rounds."""
    forced = (step % num_arms).astype(jnp.int32)
    use = (step < initial_pulls * num_arms) & mask[forced]
    return jnp.where(use, forced, action).astype(jnp.int32)


def forced_probs(step: jax.Array, initial_pulls: int, num_arms: int, probs, mask):
    """`probs` with all mass on arm `step mod K` while `forced_pull` forces it."""
    forced = (step % num_arms).astype(jnp.int32)
    use = (step < initial_pulls * num_arms) & mask[forced]
    return jnp.where(use, jax.nn.one_hot(forced, num_arms, dtype=probs.dtype), probs)


# ---------------------------------------------------------------------------
# What every single-network agent shares: state, setup, store-then-retrain


class NeuralState(NamedTuple):
    """State shared by the single-network agents."""

    params: Params  # network parameters theta (an nnx.State of arrays)
    params0: Params  # theta_0, the initial parameters weight decay pulls toward
    opt_state: Any  # optax state of the parameters
    buffer: ReplayBuffer  # last `capacity` rounds: x (f,), action (), reward ()
    step: jax.Array  # () int32 rounds seen


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a neural agent builds and trains its network (its factory's arguments).

    The defaults are `neural_epsilon_greedy`'s; every factory passes its own.
    `setup_training` validates the values.
    """

    features: str = "context"
    """Input form: "context" (multi-head), "disjoint" or "arms"."""
    hidden_sizes: Any = (50,)
    """Hidden layer widths (an int is one layer)."""
    learning_rate: Any = 1e-2
    """Adam step size > 0 (may be traced)."""
    train_every: int = 50
    """Retrain every this many rounds."""
    train_steps: int = 50
    """Gradient steps per retraining."""
    batch_size: int = 64
    """Replay rows per gradient step."""
    capacity: int = 10_000
    """Replay buffer slots (the last `capacity` rounds are kept)."""
    max_grad_norm: Any = 5.0
    """Global-norm gradient clipping (0: none)."""
    weight_decay: Any = 0.0
    """Coefficient of ||theta - theta_0||^2 in the loss, >= 0."""
    initial_pulls: int = 1
    """Round-robin pulls of each arm before the policy acts."""

    @classmethod
    def pick(cls, arguments: Mapping[str, Any]) -> TrainConfig:
        """The training options among a factory's `arguments` (its `locals()`);
        options the factory does not take keep their defaults."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: arguments[name] for name in names if name in arguments})


class Setup(NamedTuple):
    """Validated static configuration of a neural agent (Python values)."""

    network: Network
    optimizer: optax.GradientTransformation
    train_every: int
    train_steps: int
    batch_size: int
    capacity: int
    initial_pulls: int
    learning_rate: Any  # as given (may be traced)
    weight_decay: Any  # as given (may be traced)


def setup_training(num_arms, dim, train: TrainConfig) -> Setup:
    """Validates the shared hyperparameters and builds the network once."""
    num_arms = positive_int("num_arms", num_arms)
    dim = positive_int("dim", dim)
    sizes = hidden_sizes_of(train.hidden_sizes)
    network = make_network(train.features, num_arms, dim, sizes)
    train_every, train_steps, batch_size, capacity = check_training(
        train.learning_rate,
        train.train_every,
        train.train_steps,
        train.batch_size,
        train.capacity,
        train.max_grad_norm,
    )
    real("weight_decay", train.weight_decay, low=0.0)
    initial_pulls = non_negative_int("initial_pulls", train.initial_pulls)
    return Setup(
        network,
        make_optimizer(train.learning_rate, train.max_grad_norm),
        train_every,
        train_steps,
        batch_size,
        capacity,
        initial_pulls,
        train.learning_rate,
        train.weight_decay,
    )


def replay_item(setup: Setup, obs, action, reward) -> dict:
    """The replay record of one round: stored input x, action and reward."""
    return {
        "x": setup.network.stored_input(obs, action),
        "action": jnp.asarray(action, jnp.int32),
        "reward": jnp.asarray(reward, jnp.float32),
    }


def empty_item(setup: Setup) -> dict:
    """A zero replay record, the shape template of the buffer."""
    return {
        "x": jnp.zeros((setup.network.dim,), jnp.float32),
        "action": jnp.zeros((), jnp.int32),
        "reward": jnp.zeros((), jnp.float32),
    }


def net_init(key, setup: Setup) -> NeuralState:
    """Fresh parameters from `key`, their optimizer state and an empty buffer."""
    params = setup.network.init(key)
    return NeuralState(
        params=params,
        params0=params,
        opt_state=setup.optimizer.init(params),
        buffer=replay_init(empty_item(setup), setup.capacity),
        step=jnp.zeros((), jnp.int32),
    )


def net_update(key, net: NeuralState, item: dict, setup: Setup):
    """Stores the round, then retrains every `train_every` rounds."""
    net = net._replace(buffer=replay_push(net.buffer, item), step=net.step + 1)
    network = setup.network

    def loss(params, batch, valid):
        return squared_error_loss(
            network, params, net.params0, batch, valid, setup.weight_decay
        )

    def train(net):
        params, opt_state = fit(
            key,
            net.params,
            net.opt_state,
            net.buffer,
            setup.optimizer,
            loss,
            setup.train_steps,
            setup.batch_size,
        )
        return net._replace(params=params, opt_state=opt_state)

    return maybe(should_train(net.step, setup.train_every), train, net)
