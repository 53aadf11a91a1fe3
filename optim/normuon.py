r"""NorMuon: Muon with a neuron-wise normalisation of the orthogonalised update.

Li, Liu, Liang, Chen & Zhao 2025, "NorMuon: Making Muon more efficient and scalable",
arXiv:2510.05491 (a record of modded-nanogpt), following the authors' reference PyTorch code
(github.com/zichongli5/NorMuon, normuon.py, `SingleDeviceNorMuonWithAuxAdam`, whose matrix
step is `normuon_update`, and `SingleDeviceNorMuon`, the same step alone) step for step.

For a weight matrix W with gradient G, in PyTorch's (out, in) layout (m = out rows, one per
neuron; n = in columns), at step t with learning rate lr_t:

    M  <- b M + (1 - b) G                               (momentum; the reference's lerp)
    U   = b M + (1 - b) G                               (Nesterov; U = M without)
    O   = NS5(U / (||U||_F + 1e-7))                     (Muon's orthogonalisation)
    v  <- b2 v + (1 - b2) mean_j(O_ij^2)                (v in R^m: one second moment per neuron)
    O'  = O / (sqrt(v) + 1e-10)                         (each row by its neuron's RMS)
    O'' = O' ||O||_F / (||O'||_F + 1e-10)               (the update keeps O's Frobenius norm)
    W  <- W (1 - lr_t wd) - lr_t sqrt(max(1, m / n)) O''

NS5 is Keller Jordan's quintic Newton-Schulz iteration, 5 steps of X <- a X + (b A + c A^2) X,
A = X X^T, (a, b, c) = (3.4445, -4.7750, 2.0315), on the wide orientation of the matrix
(transposed when it has more rows than columns): optax.contrib's
`orthogonalize_via_newton_schulz` computes that same iteration and is reused here. v starts at
zero and has no bias correction; the decay is applied before the step to every parameter of
the group (not cautious, not masked by the update's sign). The paper's Algorithm 1 states the
last rescale as an RMS match to Adam (lr_hat = 0.2 lr sqrt(mn) / ||O'||_F); the released code,
implemented here, keeps O's norm and applies Muon's sqrt(max(1, m / n)), so its learning rate is
Muon's (0.02 by default).

optiscale's kernels are (in, out), the transpose of PyTorch's weights: the neurons are the
*columns* here, so v has shape (out,) = (kernel.shape[-1],), the mean runs over axis -2, and the
scale is sqrt(max(1, shape[-1] / shape[-2])). Leading axes are batch axes (the reference's
batched Newton-Schulz does the same): a stack of scanned layers (L, in, out) gets one
orthogonalisation, one v of shape (L, out) and one norm per layer.

Differences from the reference, by design: the reference runs Newton-Schulz in bfloat16 (and
everything after it, up to the parameter update, in bfloat16 too); here it runs in the
parameters' dtype, as optiscale's Muon (optax.contrib.muon) does. The fixture
(tests/fixtures/optimizers/make_normuon.py) runs the reference with that cast removed.

Parameters that are not hidden matrices (embeddings, norm scales, biases) get the reference's
auxiliary Adam (`adam_update`: bias-corrected, eps 1e-10 outside the root, decoupled decay
before the step), which is optax.adamw, at lr x adam_lr_multiplier (`normuon_and_adamw`; the
split is optim.masks.matrices_and_rest).
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import contrib
from optax.contrib import _muon

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.normuon import NORMUON
from optim.masks import matrices_and_rest
from optim.registry import register
from optim.schedules import scaled_learning_rate

ADAM_KEYS = ("adam_b1", "adam_b2", "adam_eps", "adam_weight_decay", "adam_lr_multiplier")
NS_COEFFS = (3.4445, -4.7750, 2.0315)  # the reference's (a, b, c), optax's default
NS_EPS = 1e-7  # added to ||U||_F before Newton-Schulz (optax's default is 1e-8)
NORM_EPS = 1e-10  # added to sqrt(v) and to ||O'||_F (the reference's)


class ScaleByNormuonState(NamedTuple):
    """momentum: M, like the params; second_moment: v, per matrix one entry per output neuron,
    shape param.shape[:-2] + (param.shape[-1],) (a stack of layers: one row per layer)."""
    momentum: Any
    second_moment: Any


def _check_matrix(x):
    if jnp.ndim(x) < 2:
        raise ValueError(f"NorMuon updates matrices (or stacks of them); got a parameter of shape "
                         f"{jnp.shape(x)}: route vectors to the AdamW part (normuon_and_adamw)")


def _orthogonalize(u, ns_steps):
    """NS5 of every matrix in the last two axes of u (leading axes: a batch)."""
    dims = contrib.MuonDimensionNumbers(reduction_axis=-2, output_axis=-1)
    return _muon.orthogonalize_via_newton_schulz(
        u, jnp.asarray(NS_COEFFS), ns_steps, eps=NS_EPS, dimension_numbers=dims)


def _normalized(o, v, beta2):
    """(O'' times Muon's scale, new v) of the module docstring, per matrix in the last two axes
    of the (..., in, out) update o, v the (..., out) second moments."""
    frobenius = lambda x: jnp.sqrt(jnp.sum(jnp.square(x), axis=(-2, -1), keepdims=True))  # noqa
    norm = frobenius(o)
    v = v + (1 - beta2) * (jnp.mean(jnp.square(o), axis=-2) - v)  # the reference's lerp
    o = o * (1 / (jnp.sqrt(v) + NORM_EPS))[..., None, :]
    o = o * (norm / (frobenius(o) + NORM_EPS))
    fan_in, fan_out = o.shape[-2], o.shape[-1]
    return o * max(1.0, fan_out / fan_in) ** 0.5, v


@NORMUON.defaults_of(exclude=("weight_decay",) + ADAM_KEYS)
def scale_by_normuon(*, beta, beta2, ns_steps, nesterov) -> optax.GradientTransformation:
    """NorMuon's direction (the module docstring, without learning rate and weight decay) on a
    tree of (in, out) matrices, each with any leading batch axes (a stack of layers)."""
    checks.in_unit_interval("beta", beta)
    checks.in_unit_interval("beta2", beta2)
    checks.integer("ns_steps", ns_steps)

    def init_fn(params):
        def second_moment(p):
            _check_matrix(p)
            return jnp.zeros(p.shape[:-2] + p.shape[-1:], p.dtype)
        return ScaleByNormuonState(momentum=jax.tree.map(jnp.zeros_like, params),
                                   second_moment=jax.tree.map(second_moment, params))

    def update_fn(updates, state, params=None):
        del params
        treedef = jax.tree.structure(updates)
        out, momenta, moments = [], [], []
        for g, m, v in zip(*(treedef.flatten_up_to(tree) for tree in (
                updates, state.momentum, state.second_moment))):
            _check_matrix(g)
            m = m + (1 - beta) * (g.astype(m.dtype) - m)
            u = g + beta * (m - g) if nesterov else m
            direction, v = _normalized(_orthogonalize(u, ns_steps), v, beta2)
            out.append(direction.astype(g.dtype))
            momenta.append(m)
            moments.append(v)
        return treedef.unflatten(out), ScaleByNormuonState(treedef.unflatten(momenta),
                                                           treedef.unflatten(moments))

    return optax.GradientTransformation(init_fn, update_fn)


@NORMUON.defaults_of(exclude=ADAM_KEYS)
def normuon(learning_rate: optax.ScalarOrSchedule, *, weight_decay, mask=None,
            **direction) -> optax.GradientTransformation:
    """NorMuon on a tree of matrices (SingleDeviceNorMuon): `scale_by_normuon` with the
    `direction` hyperparameters, decoupled weight decay of the parameters before the step
    (p <- p (1 - lr wd), on the leaves `mask` selects; None: all) and the learning rate (a
    float or a schedule of the 0-based call count). `update` needs `params` when
    weight_decay > 0."""
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(scale_by_normuon(**direction),
                       *decay_then_lr(learning_rate, weight_decay, mask))


@NORMUON.defaults_of()
def normuon_and_adamw(learning_rate: optax.ScalarOrSchedule, *, adam_b1, adam_b2, adam_eps,
                      adam_weight_decay, adam_lr_multiplier, mask=None,
                      **matrix) -> optax.GradientTransformation:
    """SingleDeviceNorMuonWithAuxAdam: `normuon` (with the `matrix` hyperparameters) on the
    hidden matrices, AdamW (adam_* hyperparameters; lr x adam_lr_multiplier) on embeddings,
    norm scales and biases (optim.masks.matrices_and_rest); both decay the parameters `mask`
    selects (None: all, as the reference)."""
    checks.learning_rate(learning_rate)
    checks.in_unit_interval("adam_b1", adam_b1)
    checks.in_unit_interval("adam_b2", adam_b2)
    checks.positive("adam_eps", adam_eps)
    checks.nonnegative("adam_weight_decay", adam_weight_decay)
    checks.nonnegative("adam_lr_multiplier", adam_lr_multiplier)
    adam_lr = scaled_learning_rate(learning_rate, adam_lr_multiplier)
    rest = optax.adamw(adam_lr, b1=adam_b1, b2=adam_b2, eps=adam_eps,
                       weight_decay=adam_weight_decay, mask=mask)
    return matrices_and_rest(normuon(learning_rate, mask=mask, **matrix), rest)


@register("normuon", supports_mup=False)
def _normuon_from_config(h, schedule, decay_mask):
    """config.optimizer.normuon: NorMuon on the hidden matrices (each layer of a stack its own
    matrix), AdamW on embeddings, norms and biases at lr x adam_lr_multiplier; both decay the
    parameters `decay_mask` selects."""
    return normuon_and_adamw(schedule, mask=decay_mask, **NORMUON.values(h))
