"""smoothdistill_lib: the helper library behind the Smooth-Distill tutorial book.

Modules follow the data flow of the book, one concept each::

    recordings -> datasets -> windows -> splits -> pipeline -> models / losses / ema / methods
        -> engine -> checkpoints -> experiment -> records -> runner -> report -> analyses / plots -> chapters

See CONTRIBUTING.md for the contracts between the modules.
"""

__version__ = "0.1.0"
