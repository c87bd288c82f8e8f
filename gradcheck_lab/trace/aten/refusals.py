"""What is not translated, and why: the reasons a user reads, and the ops whose results are
constants of the program rather than steps of it."""

from __future__ import annotations

from gradcheck_lab.trace.aten.table import METADATA_ONLY, refuse

_RANDOM = ("bernoulli normal uniform exponential geometric cauchy log_normal random "
           "multinomial poisson binomial _standard_gamma _sample_dirichlet")
refuse(" ".join(f"aten.{name}" for name in _RANDOM.split()),
       "it draws random numbers from a traced value, so the forward is not a function of its "
       "inputs")
_COMPLEX = ("view_as_real view_as_complex complex polar real imag _fft_r2c _fft_c2r _fft_c2c "
            "fft_fft fft_rfft fft_ifft fft_irfft stft istft _conj_physical conj_physical")
refuse(" ".join(f"aten.{name}" for name in _COMPLEX.split()),
       "it works on complex values, and the case language is real-valued")
_SPARSE = ("_to_sparse to_sparse _to_dense to_dense sparse_mask _values _indices values "
           "indices _sparse_sum _sparse_softmax _sparse_log_softmax _sparse_mm "
           "_sparse_addmm sparse_resize_")
refuse(" ".join(f"aten.{name}" for name in _SPARSE.split()),
       "it works on a sparse layout; only dense tensors are translated")
_BACKWARD = ("_adaptive_avg_pool2d_backward _adaptive_avg_pool3d_backward avg_pool2d_backward "
             "avg_pool3d_backward convolution_backward embedding_dense_backward "
             "max_pool2d_with_indices_backward max_pool3d_with_indices_backward "
             "native_group_norm_backward native_layer_norm_backward "
             "native_batch_norm_backward threshold_backward sigmoid_backward tanh_backward "
             "gelu_backward _softmax_backward_data _log_softmax_backward_data "
             "nll_loss_backward mse_loss_backward")
refuse(" ".join(f"aten.{name}" for name in _BACKWARD.split()),
       "it is a backward kernel run inside the forward, and the symbolic oracle never reads "
       "torch's derivative formulas")
refuse("aten.set_ aten.resize_ aten.resize_as_ aten.as_strided_",
       "it changes a tensor's storage or shape in place")
refuse("aten.nonzero aten._unique2 aten.unique_dim aten.unique_consecutive",
       "its result's shape depends on the values")

# Results read from their inputs' shape, dtype or device alone: constants, even when the
# tensor they read is traced.
METADATA_ONLY.update(
    f"aten.{name}.default" for name in
    ("empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like",
     "randint_like", "new_empty", "new_zeros", "new_ones", "new_full", "new_empty_strided",
     "sym_size", "sym_numel", "sym_stride", "sym_storage_offset"))
METADATA_ONLY.update({"aten.sym_size.int", "aten.sym_stride.int", "aten.randint_like.low_dtype"})

# Core ATen ops that make tensors without reading one (a program constant when a traced step
# reads their result), and ops whose results are integer or bool data, read as the constants
# they are at the point (no gradient flows through them): neither needs a translation.
MAKES_CONSTANTS = frozenset({
    "aten.arange.start_step", "aten.empty.memory_format", "aten.empty_strided.default",
    "aten.full.default", "aten.rand.default", "aten.randn.default", "aten.randperm.default",
    "aten.scalar_tensor.default", "aten._local_scalar_dense.default"})
INTEGER_RESULTS = frozenset({
    "aten.any.default", "aten.any.dim", "aten.any.dims", "aten.argmax.default",
    "aten.argmin.default", "aten.isinf.default", "aten.isnan.default", "aten.nonzero.default"})
