"""Exercise checks, one module per lesson; ``llmedu.check`` gathers them."""
