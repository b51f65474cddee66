"""Where ktsweep relies on a dependency's internals, one module per dependency, each with a
contract test in tests/compat that fails with a clear message when the dependency moves."""
