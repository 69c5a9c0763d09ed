"""jaxnn: dense networks in JAX with hand-derived backpropagation, verified against jax.grad.

Parameters are plain pytrees: ``params[l]`` is ``{"W": (n^[l+1], n^[l]), "b": (n^[l+1], 1)}``,
layer ``l + 1`` of the seeds' 1-based math. Inputs are ``(n_x, m)``, one example per column.
"""

from jaxnn import activations as activations
from jaxnn import losses as losses
from jaxnn import optim as optim
from jaxnn.backpropagation import Backward as Backward
from jaxnn.backpropagation import backprop as backprop
from jaxnn.backpropagation import backward as backward
from jaxnn.backpropagation import output_delta as output_delta
from jaxnn.backpropagation import value_and_backprop as value_and_backprop
from jaxnn.custom import cost_with_hand_gradients as cost_with_hand_gradients
from jaxnn.network import Cache as Cache
from jaxnn.network import Network as Network
from jaxnn.network import cost as cost
from jaxnn.network import forward as forward
from jaxnn.network import init_params as init_params
from jaxnn.network import predict as predict
from jaxnn.verify import check_gradients as check_gradients
from jaxnn.verify import locate_fault as locate_fault

__version__ = "0.1.0"
