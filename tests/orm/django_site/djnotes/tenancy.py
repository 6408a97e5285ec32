from typing import Any


def tenant_of(request: Any) -> str | None:
    """Each signed-in user is a tenant of their own, named as the notes' owner column names it."""
    user = request.user
    return str(user.pk) if user.is_authenticated else None
