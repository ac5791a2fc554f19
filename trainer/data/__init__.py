"""Rows to the datasets the recipes and the evaluation read, held-out splits, preference pairs."""
