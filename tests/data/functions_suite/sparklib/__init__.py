"""A small library with five custom autograd Functions, as a test fixture for
``pytest --gradcheck-functions``. Its own tests (test_sparklib.py) gradcheck only one of them.
GRADCHECK_LAB_PLANTED=0 mends the planted bug in Cube's backward."""
