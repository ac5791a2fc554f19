"""``python -m trainer infer|serve``: generation, the compare worker, endpoints."""
