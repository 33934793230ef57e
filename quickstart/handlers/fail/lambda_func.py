# Raises on purpose: the worker answers 500 with the exception's type, message and traceback.
def handler(event):
    raise ValueError("this handler always fails: %r" % (event,))
