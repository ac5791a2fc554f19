"""``python -m trainer export``: merge, archive, register or push one adapter or model."""
