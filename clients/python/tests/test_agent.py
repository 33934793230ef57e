"""The agent, called as the runtime calls it: the pickle protocol it answers with, and what it
refuses."""

import base64
import pickle
import sys
import types

import pytest

from lambdaworker import agent, wire

import poolfuncs


def first_value(answer):
    return base64.b64decode(answer[agent.KEY]["results"][0]["value"])


def test_the_answer_uses_at_most_the_clients_protocol():
    event = wire.encode(poolfuncs.square, [((3,), {})])
    event[agent.KEY]["protocol"] = 2
    answer = agent.handler(event)
    assert answer[agent.KEY]["protocol"] == 2
    data = first_value(answer)
    assert data[:2] == b"\x80\x02" and pickle.loads(data) == 9
    event[agent.KEY]["protocol"] = 99
    assert agent.handler(event)[agent.KEY]["protocol"] == pickle.HIGHEST_PROTOCOL


def test_the_client_sends_its_highest_protocol():
    event = wire.encode(poolfuncs.square, [((3,), {})])
    assert event[agent.KEY]["protocol"] == pickle.HIGHEST_PROTOCOL
    data = base64.b64decode(event[agent.KEY]["call"])
    assert data[:2] == bytes([0x80, pickle.HIGHEST_PROTOCOL])


def test_an_event_that_is_not_a_pool_call_is_refused():
    for event in ({}, {"lambdaworker": "x"}, [1], {"lambdaworker": {"version": 1}}):
        with pytest.raises(ValueError, match="not a lambdaworker pool call"):
            agent.handler(event)
    event = wire.encode(poolfuncs.square, [((3,), {})])
    event[agent.KEY]["version"] = 2
    with pytest.raises(ValueError, match="version 2"):
        agent.handler(event)


def test_a_call_that_cannot_be_unpickled_says_why(monkeypatch):
    module = types.ModuleType("only_on_the_client")
    exec("def f(x):\n    return x\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "only_on_the_client", module)
    event = wire.encode(module.f, [((1,), {}), ((2,), {})])
    monkeypatch.delitem(sys.modules, "only_on_the_client")
    assert event[agent.KEY]["bytecode"] is False
    outcomes = wire.decode("pool-fn", agent.handler(event), 2)
    assert [ok for ok, _ in outcomes] == [False, False]
    err = outcomes[0][1]
    assert err.remote_type == "ModuleNotFoundError"
    assert "could not unpickle the call: No module named 'only_on_the_client'" in err.remote_message
    assert "must be deployed in the pool function" in err.remote_message


def test_by_value_functions_run_on_the_same_python_only():
    event = wire.encode(lambda x: x + 1, [((1,), {})])
    assert event[agent.KEY]["bytecode"] is True
    assert pickle.loads(first_value(agent.handler(event))) == 2
    event[agent.KEY]["python"] = "3.1.0"
    event[agent.KEY]["call"] = "not even base64"  # never unpickled
    ((ok, err),) = wire.decode("pool-fn", agent.handler(event), 1)
    assert not ok and err.remote_type == agent.BYTECODE_ERROR
    assert "does not cross Python versions (client 3.1.0, function " in err.remote_message


def test_results_holding_bytecode_are_not_unpickled_from_another_version():
    answer = agent.handler(wire.encode(poolfuncs.make_adder, [((1,), {})]))
    assert answer[agent.KEY]["results"][0]["bytecode"] is True
    ((ok, adder),) = wire.decode("pool-fn", answer, 1)
    assert ok and adder(2) == 3
    answer[agent.KEY]["python"] = "3.1.0"
    ((ok, err),) = wire.decode("pool-fn", answer, 1)
    assert not ok and "(client " in str(err) and "function 3.1.0)" in str(err)


def test_the_agent_stands_alone():
    """It is deployed as one file: it may import only the standard library and cloudpickle."""
    import ast

    tree = ast.parse(open(agent.__file__).read())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert imported <= {"base64", "io", "pickle", "platform", "traceback", "types", "cloudpickle"}
