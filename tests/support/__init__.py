"""What the tests and the benchmarks share: processes, local stand-ins for the internet, checkers.

Nothing here is a fixture (those live in tests/conftest.py); bench/ imports from here too.
"""
