"""The worked examples in docstrings are true."""

import doctest
import importlib

import pytest

MODULES = ["pgkeras.checks", "pgkeras.config", "pgkeras.envs", "pgkeras.gradients", "pgkeras.inference",
           "pgkeras.policies", "pgkeras.preprocess", "pgkeras.returns", "pgkeras.train", "pgkeras.callbacks",
           "pgkeras.evaluation", "pgkeras.checkpoints", "pgkeras.play"]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    numpy, pgkeras = importlib.import_module("numpy"), importlib.import_module("pgkeras")
    result = doctest.testmod(module, globs={"np": numpy, "pgkeras": pgkeras, **vars(module)})
    assert result.failed == 0
