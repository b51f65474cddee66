"""Where the worker relies on a library's internals: one module per library (`keras_tuner`,
`tensorflow`, `wandb`).

Each function here wraps a private name (a leading underscore, a module path the library does
not document, or a patch of one of its classes) that has no public equivalent, with a comment
saying why it is needed. The rest of the worker imports these, never the private names, so an
upgrade that moves one breaks here alone, and tests/compat/ has a contract test for each that
fails with a message naming what moved and this module to update.
"""
