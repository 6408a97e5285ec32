from typing import Any


def tenant_of(request: Any) -> str | None:
    """Each signed-in user is a tenant of their own."""
    user = request.user
    return f"user-{user.pk}" if user.is_authenticated else None
