"""The pieces of ``python -m mhd2`` (:mod:`mhd2.cli`): shared options, binding, running."""
