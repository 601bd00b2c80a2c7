"""Every ``Examples`` section in the library's docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import riemtorch

MODULES = sorted(info.name for info in pkgutil.walk_packages(riemtorch.__path__, "riemtorch."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_examples_exist():
    # the test above would pass vacuously if no module had any
    finder = doctest.DocTestFinder()
    found = [test for name in MODULES for test in finder.find(importlib.import_module(name))
             if test.examples]
    assert len(found) >= 15
