"""Replaying the authors' reference trajectories (tests/fixtures/optimizers/<name>.npz, written
by the make_<name>.py scripts there with the authors' PyTorch code) through an optax transform.

    fixture = load("mars")
    err = max_relative_error(fixture, "matrices", "float64", tx, to_jax=transpose_2d)

On "matrices" the transform sees the reference's gradients; on "model" it computes its own from
the tiny MLP's loss (mlp_loss below, the loss of common.mlp_loss_torch), so agreement also
covers an error feeding back through later steps. The step t lr is the fixture's lrs[t],
passed as a schedule of the update count.
"""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "optimizers"


class Fixture(dict):
    """"<problem>/<dtype>/<what>/<param>" -> array, and `meta` (the script's JSON)."""
    meta: dict


def load(name: str) -> Fixture:
    with np.load(FIXTURES / f"{name}.npz") as npz:
        fixture = Fixture({k: npz[k] for k in npz.files if k != "meta"})
        fixture.meta = json.loads(str(npz["meta"]))
    return fixture


def section(fixture: Fixture, problem: str, dtype: str, what: str) -> dict:
    prefix = f"{problem}/{dtype}/{what}/"
    return {k[len(prefix):]: v for k, v in fixture.items() if k.startswith(prefix)}


def mlp_loss(params: dict, data: dict):
    """0.5 mean((tanh(X W1^T + b1) W2^T - Y)^2), in the fixture's (PyTorch) layout."""
    hidden = jnp.tanh(data["x"] @ params["w1"].T + params["b1"])
    return 0.5 * jnp.mean((hidden @ params["w2"].T - data["y"]) ** 2)


def identity(tree):
    return tree


def transpose_2d(tree):
    """PyTorch's (out, in) weights <-> optiscale's (in, out) kernels (and back: its own
    inverse); other ranks unchanged."""
    return {k: v.T if np.ndim(v) == 2 else v for k, v in tree.items()}


def replay(fixture: Fixture, problem: str, dtype: str, make_tx, to_jax=identity,
           jit: bool = True, **update_kwargs) -> dict:
    """Runs `make_tx(schedule)` (an optax transform; schedule = the fixture's lrs by update
    count) from the fixture's initial parameters, in `dtype` (float64 under jax x64), and
    returns name -> (steps + 1, *shape) parameters in the fixture's layout. `to_jax` maps the
    fixture's layout to the transform's (and back). `update_kwargs` go to every update."""
    lrs = fixture[f"{problem}/{dtype}/lrs"]
    init = section(fixture, problem, dtype, "init")
    grads = section(fixture, problem, dtype, "grads")
    data = section(fixture, problem, dtype, "data")
    steps = len(lrs)
    with jax.enable_x64(dtype == "float64"):
        cast = lambda tree: {k: jnp.asarray(v, dtype) for k, v in tree.items()}  # noqa: E731
        lr_array = jnp.asarray(lrs, dtype)
        tx = make_tx(lambda count: lr_array[count])
        params = cast(to_jax(init))
        state = tx.init(params)
        update = jax.jit(tx.update) if jit else tx.update
        loss_grad = jax.grad(mlp_loss)
        history = [to_jax(params)]
        for t in range(steps):
            if problem == "model":
                g = to_jax(loss_grad(to_jax(params), cast(data)))
            else:
                g = cast(to_jax({k: v[t] for k, v in grads.items()}))
            updates, state = update(g, state, params, **update_kwargs)
            params = optax.apply_updates(params, updates)
            history.append(to_jax(params))
        return {k: np.stack([np.asarray(h[k], np.float64) for h in history]) for k in init}


def max_relative_error(fixture: Fixture, problem: str, dtype: str, make_tx,
                       to_jax=identity, **kwargs) -> float:
    """max over steps and parameters of |ours - reference| / max|reference| per tensor and
    step (a relative error that a near-zero entry does not blow up)."""
    ours = replay(fixture, problem, dtype, make_tx, to_jax, **kwargs)
    reference = section(fixture, problem, dtype, "params")
    worst = 0.0
    for k, want in reference.items():
        want = np.asarray(want, np.float64)
        scale = np.max(np.abs(want.reshape(len(want), -1)), axis=1)
        diff = np.max(np.abs((ours[k] - want).reshape(len(want), -1)), axis=1)
        worst = max(worst, float(np.max(diff / np.maximum(scale, 1e-30))))
    return worst
