"""Views, as functionalization sees them: each view is its root read through a chain of
functional view steps; a write into a view is the root with the written value scattered back
through the same chain (``select`` -> ``select_scatter``, ``slice`` -> ``slice_scatter``, a
reshape -> the reshape back, ...).

``steps_of`` names the functional step of each output of a view op (the parts of ``split``
and ``unbind`` are slices and selects of their input), ``scatter`` gives a step's inverse for
a write, and ``Aliases`` remembers which tensor is a view of which root, through which steps,
and whether the root was written after the view's value was read.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ViewStep:
    """A functional view op applied to its base: ``op(base, *args, **kwargs)``."""

    op: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    shape: tuple[int, ...]  # the view's shape


DETACH = "aten.detach.default"  # a detached alias: writes through it reach its base; read,
# it is a constant


def detached(out: Any) -> ViewStep:
    return _step(DETACH, out)


def _step(op: str, out: Any, *args: Any) -> ViewStep:
    return ViewStep(op, args, (), tuple(out.shape))


def _dim(dim: Any, ndim: int) -> int:
    return int(dim) % max(ndim, 1)


def _pieces(base: Any, dim: int, outs: Any) -> list[ViewStep]:
    """split / split_with_sizes / chunk / tensor_split: consecutive slices along ``dim``."""
    steps, start = [], 0
    for part in outs:
        end = start + part.shape[dim]
        steps.append(_step("aten.slice.Tensor", part, dim, start, end, 1))
        start = end
    return steps


# Views giving consecutive pieces of their input along a dim: each a slice of it.
SPLIT_VIEWS = frozenset({"split", "split_with_sizes", "chunk", "tensor_split", "unsafe_split",
                         "unsafe_split_with_sizes"})
_RESHAPES = {"aten.view.default", "aten._unsafe_view.default", "aten._reshape_alias.default",
             "aten.reshape.default", "aten.squeeze.default", "aten.squeeze.dim",
             "aten.squeeze.dims", "aten.view.dtype"}
_ALIASES = {"aten.alias.default", "aten.detach.default", "aten.lift_fresh.default",
            "aten.alias_copy.default", "aten.detach_.default"}


def steps_of(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             outs: Any) -> list[ViewStep]:
    """The functional step of each output of the view op ``name`` (the op itself, for a view
    op this module does not know)."""
    base = args[0]
    ndim = base.dim()
    given = list(args[1:])
    if name in _RESHAPES:
        return [_step("aten.view.default", out, list(out.shape)) for out in outs]
    if name in _ALIASES:
        return [_step("aten.alias.default", out) for out in outs]
    if name == "aten.select.int":
        dim = _dim(given[0], ndim)
        return [_step(name, outs[0], dim, int(given[1]) % base.shape[dim])]
    if name == "aten.slice.Tensor":
        return [_slice(base, outs[0], given, kwargs)]
    if name in ("aten.mT.default", "aten.mH.default", "aten.adjoint.default"):
        return [_step("aten.transpose.int", outs[0], ndim - 2, ndim - 1)]
    if name == "aten.numpy_T.default":
        return [_step("aten.permute.default", outs[0], list(range(ndim))[::-1])]
    if name == "aten.t.default":
        return [_step("aten.transpose.int", outs[0], 0, 1) if ndim == 2
                else _step("aten.alias.default", outs[0])]
    if name == "aten.unbind.int":
        dim = _dim(given[0] if given else kwargs.get("dim", 0), ndim)
        return [_step("aten.select.int", out, dim, k) for k, out in enumerate(outs)]
    if name.split(".")[1] in SPLIT_VIEWS:
        dim = _dim(kwargs.get("dim", given[1] if len(given) > 1 else 0), ndim)
        return _pieces(base, dim, outs)
    if name == "aten.as_strided.default":
        return [_as_strided(base, outs[0], given, kwargs)]
    return [ViewStep(name, tuple(given), tuple(sorted(kwargs.items())), tuple(out.shape))
            for out in outs]


def _slice(base: Any, out: Any, given: list[Any], kwargs: dict[str, Any]) -> ViewStep:
    """slice(self, dim=0, start=None, end=None, step=1), bounds made explicit and in range
    (an open end arrives as sys.maxsize)."""
    names = ("dim", "start", "end", "step")
    values = dict(zip(names, given, strict=False)) | kwargs
    dim = _dim(values.get("dim", 0), base.dim())
    size = base.shape[dim]
    step = int(values.get("step") or 1)
    start = values.get("start")
    end = values.get("end")
    start = 0 if start is None else int(start)
    end = size if end is None or end >= sys.maxsize else int(end)
    start = min(max(start + size if start < 0 else start, 0), size)
    end = min(max(end + size if end < 0 else end, start), size)
    return _step("aten.slice.Tensor", out, dim, start, end, step)


def _as_strided(base: Any, out: Any, given: list[Any], kwargs: dict[str, Any]) -> ViewStep:
    """as_strided reads storage; as a step of its base it holds where the base is contiguous
    (its own row-major order is the storage's, from the base's offset on)."""
    size = list(out.shape)
    stride = list(out.stride())
    offset = out.storage_offset() - base.storage_offset()
    if not base.is_contiguous():
        return ViewStep("as_strided of a non-contiguous view", (size, stride, offset), (),
                        tuple(out.shape))
    return _step("aten.as_strided.default", out, size, stride, offset)


def scatter(step: ViewStep, base: Any, written: Any) -> tuple[str, tuple[Any, ...],
                                                               dict[str, Any]] | None:
    """The step that puts ``written`` (the view's new value) into ``base`` (the value the
    view was taken from), as (op, args, kwargs); None where no functional form exists."""
    args = step.args
    if step.op == "aten.select.int":
        return "aten.select_scatter.default", (base, written, *args), {}
    if step.op == "aten.slice.Tensor":
        return "aten.slice_scatter.default", (base, written, *args), {}
    if step.op == "aten.diagonal.default":
        return "aten.diagonal_scatter.default", (base, written, *args), dict(step.kwargs)
    if step.op == "aten.as_strided.default":
        return "aten.as_strided_scatter.default", (base, written, *args), {}
    if step.op in ("aten.view.default", "aten.unsqueeze.default"):
        return "aten.view.default", (written, list(base.shape)), {}
    if step.op in ("aten.alias.default", DETACH):
        return "aten.alias.default", (written,), {}
    if step.op == "aten.permute.default":
        dims = [int(d) % len(base.shape) for d in args[0]]
        inverse = sorted(range(len(dims)), key=dims.__getitem__)
        return "aten.permute.default", (written, inverse), {}
    if step.op == "aten.transpose.int":
        return "aten.transpose.int", (written, *args), {}
    return None


class Aliases:
    """Views and their roots. A root's version counts the writes into it (or into any of its
    views); a view remembers the version its value was read at, so a later read knows it is
    stale. Every tensor here is kept alive, so that an id is never reused meanwhile."""

    def __init__(self) -> None:
        self._views: dict[int, tuple[Any, Any, tuple[ViewStep, ...], int]] = {}
        self._versions: dict[int, tuple[Any, int]] = {}

    def root_and_chain(self, tensor: Any) -> tuple[Any, tuple[ViewStep, ...]]:
        entry = self._views.get(id(tensor))
        if entry is None or entry[0] is not tensor:
            return tensor, ()
        return entry[1], entry[2]

    def _version(self, root: Any) -> int:
        entry = self._versions.get(id(root))
        return entry[1] if entry is not None and entry[0] is root else 0

    def viewed(self, view: Any, base: Any, step: ViewStep) -> None:
        root, chain = self.root_and_chain(base)
        self._views[id(view)] = (view, root, (*chain, step), self._version(root))

    def written(self, root: Any) -> None:
        self._versions[id(root)] = (root, self._version(root) + 1)

    def refreshed(self, view: Any) -> None:
        entry = self._views.get(id(view))
        if entry is not None and entry[0] is view:
            self._views[id(view)] = (*entry[:3], self._version(entry[1]))

    def stale(self, tensor: Any) -> tuple[Any, tuple[ViewStep, ...]] | None:
        """(root, chain) when the tensor is a view read before its root's last write."""
        entry = self._views.get(id(tensor))
        if entry is None or entry[0] is not tensor or entry[3] == self._version(entry[1]):
            return None
        return entry[1], entry[2]
