"""smoothdistill_lib: the helper library behind the Smooth-Distill tutorial book.

Modules follow the data flow of the book, one concept each::

    recordings -> windows -> splits -> models / losses / ema / methods -> engine
        -> runner (run records) -> metrics / stats / compute -> report / plots -> chapters

See CONTRIBUTING.md for the contracts between the modules.
"""

__version__ = "0.1.0"
