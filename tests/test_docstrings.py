"""The worked examples in docstrings are true."""

import doctest
import importlib

import pytest

MODULES = ["pgkeras.checks", "pgkeras.config", "pgkeras.envs", "pgkeras.gradients", "pgkeras.inference",
           "pgkeras.policies",
           "pgkeras.preprocess", "pgkeras.returns"]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, globs={"np": importlib.import_module("numpy"), **vars(module)})
    assert result.failed == 0
