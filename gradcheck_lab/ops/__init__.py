"""The op table of the case language: every op, defined once, looked up by name."""

from __future__ import annotations

from gradcheck_lab.ops.activations import ACTIVATIONS
from gradcheck_lab.ops.attention import ATTENTION
from gradcheck_lab.ops.base import ArgInfo, Op, Param, Params, ParamValue, Shape, suggest
from gradcheck_lab.ops.conditions import CONDITIONS
from gradcheck_lab.ops.contractions import CONTRACTIONS
from gradcheck_lab.ops.conv import CONV
from gradcheck_lab.ops.cross_entropy import CLASSIFICATION
from gradcheck_lab.ops.elementwise import BINARY, FUNCTIONS, OPERATORS
from gradcheck_lab.ops.extrema import EXTREMA
from gradcheck_lab.ops.indexing import INDEX_SCATTER
from gradcheck_lab.ops.linalg import LINALG
from gradcheck_lab.ops.losses import LOSSES
from gradcheck_lab.ops.matrix import MATRIX
from gradcheck_lab.ops.moments import MOMENTS
from gradcheck_lab.ops.nn import NN
from gradcheck_lab.ops.normalization import NORMALIZATION
from gradcheck_lab.ops.pooling import POOLING
from gradcheck_lab.ops.reductions import REDUCTIONS
from gradcheck_lab.ops.sampling import SAMPLING
from gradcheck_lab.ops.scans import SCANS
from gradcheck_lab.ops.shape import SHAPE_OPS
from gradcheck_lab.ops.softmax import SOFTMAX_OPS
from gradcheck_lab.ops.sorting import SORTING
from gradcheck_lab.ops.structure import STRUCTURE

OPS: dict[str, Op] = {op.name: op for op in [*OPERATORS, *FUNCTIONS, *BINARY, *ACTIVATIONS,
                                             *CONDITIONS, *REDUCTIONS, *EXTREMA, *MOMENTS,
                                             *SCANS, *LINALG, *CONTRACTIONS, *SOFTMAX_OPS,
                                             *MATRIX,
                                             *CLASSIFICATION, *NN, *NORMALIZATION, *ATTENTION,
                                             *SHAPE_OPS, *STRUCTURE, *CONV, *POOLING, *LOSSES,
                                             *INDEX_SCATTER, *SORTING, *SAMPLING]}

__all__ = ["OPS", "ArgInfo", "Op", "Param", "ParamValue", "Params", "Shape", "suggest"]
