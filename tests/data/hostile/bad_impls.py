"""Implementations that misbehave in every way an impl can: the runner must survive them."""

import os
import time

import numpy
import torch


def raises(x):
    raise ValueError("this impl always fails")


def returns_none(x):
    return None


def wrong_shape(x):
    return x * 2


def wrong_dtype(x):
    return x.sum().to(torch.int64)  # an integer: float32 would be lower precision, not wrong


def sleeps_forever(x):
    while True:
        try:
            time.sleep(1)
        except BaseException:  # swallows KeyboardInterrupt and SystemExit too
            pass


def kills_interpreter(x):
    os._exit(3)


class NotAnException(BaseException):
    """A BaseException that is not an Exception: except Exception lets it through."""


def raises_keyboard_interrupt(x):
    raise KeyboardInterrupt


def raises_base_exception(x):
    raise NotAnException("escaped the except Exception")


def allocates_too_much(x):
    # 64 GiB: far beyond the worker's memory budget (default 4 GiB), so it fails at once
    # instead of filling the machine's memory.
    numpy.ones(8 * 2**30)
    return x.sum()


def forks_a_child(x):
    # A child that would sleep on, holding the run's stdout and stderr open, if the worker did
    # not kill what an impl leaves behind when its case ends.
    if os.fork() == 0:
        time.sleep(300)
        os._exit(0)
    return x.sum()
