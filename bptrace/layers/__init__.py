"""Every layer type, one class each, found through one registry.

One module per family: `conv`, `pooling`, `activations`, `dense` (with flatten), `merge`
(layers that read several values); `base` holds what they share.  Each class has its
forward and backward loops side by side, its rules, and the keys it takes; `LAYERS` maps a
scenario's `type:` to its class, and tests/test_layers.py checks that every registered type
is complete.
"""
from __future__ import annotations

from .activations import Activation, Identity, LeakyRelu, Relu, Sigmoid, Softmax, Tanh
from .base import (
    EPS,
    MAX_TENSOR_ELEMENTS,
    TINY,
    BuildContext,
    Layer,
    Names,
    as_array,
    nested,
    noise_bound,
    ref,
)
from .conv import Conv, ConvTranspose
from .dense import Dense, Flatten
from .merge import Add, Concat, Multiply
from .activations import Elu, Exp, Gelu, Log, Silu, Softplus, Square
from .normalization import BatchNorm, Dropout, LayerNorm
from .pooling import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool, Pool, Upsample

LAYERS = {cls.type: cls for cls in (Conv, MaxPool, AvgPool, Sigmoid, Tanh, Relu, LeakyRelu, Identity,
                                    Softmax, Flatten, Dense, Add, Multiply, Concat)}
LAYERS.update({cls.type: cls for cls in (BatchNorm, LayerNorm, Dropout, Exp, Log, Square, Elu, Softplus, Silu,
                                          Gelu)})
LAYERS.update({cls.type: cls for cls in (ConvTranspose, GlobalAvgPool, GlobalMaxPool, Upsample)})

__all__ = ["LAYERS", "Activation", "Add", "AvgPool", "BuildContext", "Concat", "Conv", "ConvTranspose", "Dense", "EPS",
           "GlobalAvgPool", "GlobalMaxPool", "Upsample",
           "Flatten", "Identity", "Layer", "LeakyRelu", "MAX_TENSOR_ELEMENTS", "MaxPool", "Multiply",
           "Names", "Pool", "Relu", "Sigmoid", "Softmax", "TINY", "Tanh", "as_array", "nested",
           "noise_bound", "ref"]
