"""Built-in formulas; importing this package registers them."""
from . import aten, attention, conv, free, functional, linear, pooling, recurrent  # noqa: F401
