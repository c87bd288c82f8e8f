"""A fourth oracle, for the tests only: autograd through the subject's float64 reference
(``Subject.reference``), as an oracle of the contract. It plugs in by this file and one entry
in ``ORACLES`` (tests/test_oracle_contract.py adds it); ``skew`` plants an error in it."""

from __future__ import annotations

import numpy as np

from gradcheck_lab.oracles.autograd import vjp_at
from gradcheck_lab.oracles.contract import ON_DEVICE, Given, Gradients


class Float64Autograd:
    name = "float64_autograd"
    stage = ON_DEVICE
    skew = 1.0  # the first element of the first input's gradient, times this

    def gradients(self, given: Given) -> Gradients:
        assert given.subject is not None
        reference = given.subject.reference
        shapes = {spec.name: spec.shape for spec in given.case.differentiable_inputs}
        per_probe = []
        for probe in given.probes:
            flat = vjp_at(reference, given.point.values, probe)
            split = np.split(flat, np.cumsum([int(np.prod(s)) for s in shapes.values()])[:-1])
            grads = {name: part.reshape(shape).copy()
                     for (name, shape), part in zip(shapes.items(), split, strict=True)}
            first = next(iter(grads.values()))
            first.reshape(-1)[:1] *= self.skew
            per_probe.append(grads)
        return Gradients(self.name, "torch.autograd on the float64 reference",
                         np.asarray(given.found["autograd"].value), tuple(per_probe))


ORACLE = Float64Autograd()
