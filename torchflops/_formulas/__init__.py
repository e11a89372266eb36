"""Built-in formulas; importing this package registers them."""
from . import aten, attention, conv, elementwise, free, functional, linalg, linear, pooling, recurrent, spectral  # noqa: F401,E501
