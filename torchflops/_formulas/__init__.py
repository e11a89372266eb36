"""Built-in formulas; importing this package registers them."""
from . import conv, free, linear, pooling, recurrent  # noqa: F401
