"""Types of ``jaxnn``'s public names, for static checkers (pyright, mypy).

``jaxnn/__init__.py`` loads its training and tool modules, and the names re-exported
from them, on first use (PEP 562 ``__getattr__``), which a type checker cannot follow.
This stub names every one of them explicitly (``from m import f as f``).
``tests/test_conventions.py`` checks that it lists exactly ``jaxnn.__all__``, each
from the module it comes from at run time. (An ``if TYPE_CHECKING:`` block in
``__init__.py`` would be read by ``tests/test_architecture.py`` as imports from the
math layer up to training and tools.)
"""

from jaxnn import activations as activations
from jaxnn import bench as bench
from jaxnn import checkpoint as checkpoint
from jaxnn import data as data
from jaxnn import distributed as distributed
from jaxnn import losses as losses
from jaxnn import metrics as metrics
from jaxnn import model as model
from jaxnn import onnx_export as onnx_export
from jaxnn import optim as optim
from jaxnn import parallel as parallel
from jaxnn import program_cache as program_cache
from jaxnn import programs as programs
from jaxnn import regularization as regularization
from jaxnn import rows as rows
from jaxnn import sharded as sharded
from jaxnn import sklearn as sklearn
from jaxnn import steps as steps
from jaxnn import tabular as tabular
from jaxnn import train as train
from jaxnn import verify as verify
from jaxnn import weighted as weighted
from jaxnn.backpropagation import Backward as Backward
from jaxnn.backpropagation import backprop as backprop
from jaxnn.backpropagation import backward as backward
from jaxnn.backpropagation import output_delta as output_delta
from jaxnn.backpropagation import value_and_backprop as value_and_backprop
from jaxnn.hand_gradients import cost_with_hand_gradients as cost_with_hand_gradients
from jaxnn.hand_gradients import network_with_hand_gradients as network_with_hand_gradients
from jaxnn.interop import from_equinox as from_equinox
from jaxnn.interop import from_flax as from_flax
from jaxnn.interop import to_equinox as to_equinox
from jaxnn.interop import to_flax as to_flax
from jaxnn.model import load_run as load_run
from jaxnn.network import Cache as Cache
from jaxnn.network import Network as Network
from jaxnn.network import Params as Params
from jaxnn.network import cost as cost
from jaxnn.network import forward as forward
from jaxnn.network import forward_unchecked as forward_unchecked
from jaxnn.network import init_params as init_params
from jaxnn.network import predict as predict
from jaxnn.per_example import clipped_mean_grads as clipped_mean_grads
from jaxnn.per_example import per_example_grad_norms as per_example_grad_norms
from jaxnn.per_example import per_example_grads as per_example_grads
from jaxnn.validation import checked as checked
from jaxnn.verify import check_gradients as check_gradients
from jaxnn.verify import locate_fault as locate_fault
from jaxnn.verify import taylor_test as taylor_test

__version__: str
__all__: list[str]
