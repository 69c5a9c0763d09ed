"""BackPACK as an independent oracle: jaxnn.curvature's seven quantities equal BackPACK's.

The same stack in PyTorch (``torch.nn.Linear`` layers and the hidden activations, the
logits into ``torch.nn.CrossEntropyLoss()`` with its mean reduction), the same weights
and data, in float64, extended by BackPACK (Dangel, Kunstner and Hennig, ICLR 2020).
Exact quantities (DiagGGNExact, DiagHessian, KFLR, SumGradSquared, Variance) agree to
1e-10 of each leaf's scale; the sampled ones (DiagGGNMC, KFAC) in expectation: with 4000
labels per example each side is within 5% of the exact quantity (the Monte Carlo error
is about 1/sqrt(4000 m) ~ 0.6%). jaxnn's MSE and BCE heads differ from PyTorch's losses
by a constant, checked here as docs/curvature.md states it.

BackPACK is no dependency of jaxnn: these tests skip where it is not installed, and fail
under CI (``tests/conftest.py``'s ``torch_required``), where ``.ci/run`` installs it.
"""

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn.curvature import (
    diag_ggn,
    diag_ggn_mc,
    diag_hessian,
    kfac,
    kflr,
    sum_grad_squared,
    variance,
)
from tests.helpers import leaf_relative_error

# PyTorch warns that BackPACK's hooks fire on the first layer, whose input X needs no
# gradient: what BackPACK does in every such model, and no fault here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning"),
    pytest.mark.slow,  # PyTorch and BackPACK: CI runs these, the inner loop does not
]

M = 6
SAMPLES = 4000
TORCH_ACTIVATIONS = {
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",  # PyTorch's default slope, 0.01, is jaxnn's
    "linear": "Identity",
}


@pytest.fixture(scope="module")
def backpack(torch):
    """The ``backpack`` package: a skip where it is not installed, a failure under CI."""
    from tests.conftest import torch_required  # here: scripts/curvature_demo.py imports this file

    if not torch_required():
        return pytest.importorskip("backpack")
    try:
        import backpack
    except ImportError as e:
        pytest.fail(f"BackPACK is required under CI (.ci/run installs it): {e}")
    return backpack


def problem(net, seed=0):
    rng = np.random.default_rng(seed)
    params = [
        {
            "W": rng.normal(0, 1.5 / np.sqrt(n_in), (n_out, n_in)),
            "b": rng.normal(0, 0.5, (n_out, 1)),
        }
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]
    X = rng.normal(size=(net.sizes[0], M))
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = rng.integers(0, n, M)  # labels, as PyTorch takes them (and jaxnn)
    elif net.loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (n, M)).astype(float)
    else:
        Y = rng.normal(size=(n, M))
    return params, X, Y


def torch_model(torch, backpack, params, net):
    """``torch.nn.Sequential`` of Linear layers and activations, extended. Softmax and
    sigmoid before cross-entropy belong to PyTorch's loss, which takes the logits; before
    MSE the output activation is a module (a linear one is left out: nothing to do)."""
    modules = []
    for l, layer in enumerate(params):
        linear = torch.nn.Linear(*layer["W"].shape[::-1]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(layer["W"]))
            linear.bias.copy_(torch.as_tensor(layer["b"].reshape(-1)))
        modules.append(linear)
        name = net.activations[l]
        if l < net.L - 1 or (net.loss == "mse" and name != "linear"):
            modules.append(getattr(torch.nn, TORCH_ACTIVATIONS[name])())
    return backpack.extend(torch.nn.Sequential(*modules))


def backpack_quantities(torch, backpack, params, X, Y, net, loss, extensions):
    """``{savefield: [{"W": ..., "b": ...}] per layer}`` after one backward pass with the
    given BackPACK extensions."""
    model = torch_model(torch, backpack, params, net)
    loss_function = backpack.extend(loss)
    target = torch.as_tensor(Y if Y.ndim == 1 else Y.T)
    value = loss_function(model(torch.as_tensor(X.T)), target)
    with backpack.backpack(*extensions):
        value.backward()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    out = {}
    for extension in extensions:
        field = extension.savefield
        out[field] = [{"W": getattr(m.weight, field), "b": getattr(m.bias, field)} for m in linears]
    out["grad"] = [{"W": m.weight.grad, "b": m.bias.grad} for m in linears]
    return out


def as_numpy(x):
    if isinstance(x, list):
        return [as_numpy(t) for t in x]
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


def assert_layers_close(ours, theirs, rtol, what, scale=1.0):
    """Every layer's W and b (Kronecker factors: each factor) within rtol of its scale;
    jaxnn's (n, 1) biases against PyTorch's (n,)."""
    for l, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for leaf in ("W", "b"):
            x, y = as_numpy(a[leaf]), as_numpy(b[leaf])
            pairs = zip(x, y, strict=True) if isinstance(x, list) else [(x, y)]
            for i, (u, v) in enumerate(pairs):
                u = scale * np.asarray(u)
                err = leaf_relative_error(u.reshape(v.shape), v)
                assert err <= rtol, f"{what}, layer {l + 1}, {leaf}[{i}]: {err:.2e} > {rtol:.0e}"


# (network, PyTorch loss, c): BackPACK's curvature is c times jaxnn's, its gradient
# moments c^2 times (docs/curvature.md's table). BackPACK 1.7.1's KFLR has no LeakyReLU
# and its DiagHessian no Identity, so the hidden layers here avoid them; its
# BCEWithLogitsLoss takes one output only.
CASES = {
    "ce, tanh and sigmoid": (
        jaxnn.Network((4, 5, 4, 3), ("tanh", "sigmoid", "softmax"), "cross_entropy"),
        "CrossEntropyLoss",
        1.0,
    ),
    "ce, relu and tanh": (
        jaxnn.Network((4, 5, 4, 3), ("relu", "tanh", "softmax"), "cross_entropy"),
        "CrossEntropyLoss",
        1.0,
    ),
    "bce, one output": (
        jaxnn.Network((4, 5, 1), ("tanh", "sigmoid"), "binary_cross_entropy"),
        "BCEWithLogitsLoss",
        1.0,
    ),
    # jaxnn's MSE keeps the seed's 1/2 and sums over the n_L = 3 outputs; PyTorch's
    # MSELoss() averages (a - y)^2 over them: 2/n_L.
    "mse, 3 outputs": (jaxnn.Network((4, 5, 3), ("tanh", "linear"), "mse"), "MSELoss", 2 / 3),
    # After a sigmoid both sides split the GGN at A^[L] (H4); the Hessian keeps sigma''.
    "mse after sigmoid, 2 outputs": (
        jaxnn.Network((4, 5, 2), ("tanh", "sigmoid"), "mse"),
        "MSELoss",
        2 / 2,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_exact_quantities_equal_backpacks(torch, backpack, case):
    """DiagGGNExact, DiagHessian, KFLR, SumGradSquared and Variance, and the gradient,
    float64, within 1e-10 of each leaf's scale, after the head's constant c."""
    from backpack.extensions import KFLR, DiagGGNExact, DiagHessian, SumGradSquared, Variance

    net, loss, c = CASES[case]
    params, X, Y = problem(net)
    theirs = backpack_quantities(
        torch,
        backpack,
        params,
        X,
        Y,
        net,
        getattr(torch.nn, loss)(),
        [DiagGGNExact(), DiagHessian(), KFLR(), SumGradSquared(), Variance()],
    )
    curvature = {
        "grad": jaxnn.backprop(params, X, Y, net),
        "diag_ggn_exact": diag_ggn(params, X, Y, net),
        "diag_h": diag_hessian(params, X, Y, net),
    }
    for field, value in curvature.items():
        assert_layers_close(value, theirs[field], 1e-10, field, c)
    # Of KFLR's factors only G carries the loss: A is the inputs' second moment.
    factors = [
        {"W": [c * f["W"][0], f["W"][1]], "b": [c * f["b"][0]]} for f in kflr(params, X, Y, net)
    ]
    assert_layers_close(factors, theirs["kflr"], 1e-10, "kflr")
    moments = {
        "sum_grad_squared": sum_grad_squared(params, X, Y, net),
        "variance": variance(params, X, Y, net),
    }
    for field, value in moments.items():
        assert_layers_close(value, theirs[field], 1e-10, field, c * c)


def test_sampled_quantities_equal_backpacks_in_expectation(torch, backpack):
    """DiagGGNMC and KFAC with 4000 labels per example, each side within 5% of the exact
    DiagGGNExact and KFLR (and so of each other)."""
    from backpack.extensions import KFAC, DiagGGNMC

    net = CASES["ce, tanh and sigmoid"][0]
    params, X, labels = problem(net)
    torch.manual_seed(0)
    args = (torch, backpack, params, X, labels, net, torch.nn.CrossEntropyLoss())
    theirs = backpack_quantities(*args, [DiagGGNMC(mc_samples=SAMPLES), KFAC(mc_samples=SAMPLES)])
    key_diag, key_kfac = jax.random.split(jax.random.key(0))
    exact_diag, exact_kflr = diag_ggn(params, X, labels, net), kflr(params, X, labels, net)
    sampled_diag = diag_ggn_mc(params, X, labels, net, key_diag, samples=SAMPLES)
    sampled_kfac = kfac(params, X, labels, net, key_kfac, samples=SAMPLES)
    assert_layers_close(sampled_diag, exact_diag, 0.05, "jaxnn diag_ggn_mc")
    assert_layers_close(exact_diag, theirs["diag_ggn_mc"], 0.05, "BackPACK DiagGGNMC")
    assert_layers_close(sampled_kfac, exact_kflr, 0.05, "jaxnn kfac")
    assert_layers_close(exact_kflr, theirs["kfac"], 0.05, "BackPACK KFAC")
    # The input factor A involves no sampling: it is KFLR's, exactly, on both sides.
    for ours, bp in zip(sampled_kfac, theirs["kfac"], strict=True):
        assert leaf_relative_error(ours["W"][1], as_numpy(bp["W"][1])) <= 1e-10


def test_the_torch_model_is_the_jaxnn_network(torch, backpack):
    """The oracle's own check: the PyTorch stack gives jaxnn's cost and gradient."""
    net = CASES["ce, tanh and sigmoid"][0]
    params, X, labels = problem(net)
    model = torch_model(torch, backpack, params, net)
    value = torch.nn.CrossEntropyLoss()(model(torch.as_tensor(X.T)), torch.as_tensor(labels))
    assert abs(value.item() - float(jaxnn.cost(params, X, labels, net))) < 1e-12
