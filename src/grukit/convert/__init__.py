"""Weight exchange between grukit and other GRU conventions.

:mod:`grukit.convert.layout` is the one module that knows gate orders, transposes and bias
splits; everything else converts through it.
"""
