"""Built-in formulas; importing this package registers them."""
from . import attention, conv, free, functional, linear, pooling, recurrent  # noqa: F401
