import torch


def total(x):
    return x.sum()
