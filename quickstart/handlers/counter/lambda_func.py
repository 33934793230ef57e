# Module state survives between calls while the sandbox stays warm.
calls = 0


def handler(event):
    global calls
    calls += 1
    return {"calls": calls}
