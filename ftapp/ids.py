"""Resource ids: UUID4 strings, assigned by the service layer; anything else is refused before it names a folder."""

import re
import uuid

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: object) -> bool:
    """A canonical (lower-case, hyphenated) UUID string: the only kind of id this app writes, and safe in a path."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None
