"""Functions the pool tests send by reference (an importable module, as a deployed one is)."""

import threading
import time


def square(x):
    return x * x


def add(a, b=0):
    return a + b


def fail(message):
    raise ValueError(message)


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def unpicklable():
    return threading.Lock()


def fibonacci(n):
    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


def make_adder(n):
    """Returns a closure: pickled by value, as bytecode."""
    return lambda x: x + n
