"""Implementations that misbehave in every way an impl can: the runner must survive them."""

import os
import time

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
