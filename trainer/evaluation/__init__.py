"""``python -m trainer evaluate``: answer and score held-out rows."""
