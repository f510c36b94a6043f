"""The network SAL's drivers, one module each; sal.registry's table names them."""
