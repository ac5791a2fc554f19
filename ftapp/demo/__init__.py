"""The public demo's policy: caps (DM-), client identity, which server paths a request may name, and
the ``Visitor`` every service takes (``visitor``: whose rows, which caps; ``live_runs``: the caps on
concurrent runs; ``address_book``: who was seen where).

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.demo.client_identity import IdentitySigner, client_address, proxy_hops
from ftapp.demo.policy import DemoCaps, not_uploaded_here

__all__ = [
    "client_address",
    "DemoCaps",
    "IdentitySigner",
    "not_uploaded_here",
    "proxy_hops",
]
