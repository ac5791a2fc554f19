"""Resource ids: UUID4 strings, assigned by the service layer."""

import uuid


def new_id() -> str:
    return str(uuid.uuid4())
