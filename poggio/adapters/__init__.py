"""What Poggio uses of its libraries beyond their public API, one module per library.

Each module names every private attribute it touches, and ``check()`` raises a ``RuntimeError``
naming the one that a new release of the library renamed or changed (tests/test_adapters.py calls
each). The rest of the code goes through these functions, never through the attributes."""
