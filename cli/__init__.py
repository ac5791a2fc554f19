"""``ftapp``: the command line, an edge like ``ui``; imports ftapp only."""
