"""Database export to a JSON file and import from one (DB-).

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""
