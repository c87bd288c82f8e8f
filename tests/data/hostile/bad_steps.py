"""Training steps that misbehave: the runner must survive them, as it survives bad_impls.py."""

import os
import time

import numpy


def sleeps_forever(params, batch, lr):
    while True:
        try:
            time.sleep(1)
        except BaseException:  # swallows KeyboardInterrupt and SystemExit too
            pass


def exits(params, batch, lr):
    os._exit(0)


def allocates_too_much(params, batch, lr):
    numpy.ones(8 * 2**30)  # 64 GiB: beyond the worker's memory budget, fails at once
