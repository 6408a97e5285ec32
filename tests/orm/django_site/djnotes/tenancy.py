from typing import Any


def tenant_of(request: Any) -> str | None:
    """Each signed-in user is a tenant of their own, named as the notes' owner column names it."""
    user = request.user
    return str(user.pk) if user.is_authenticated else None


class Consents:
    """A consent lookup the setting names by its dotted path: nobody consented to anything."""

    def has_consent(self, tenant: str, purpose: str, category: str) -> bool:
        return False


CONSENTS = Consents()


def anonymous_is_empty(request: Any) -> Any:
    """What an app may return for a visitor who is not signed in: an empty
    string, a padded id, or a model's integer key."""
    shapes = {"empty": "", "padded": " acme", "plain": "fabrikam", "number": 42}
    return shapes.get(request.META.get("HTTP_X_TEST_TENANT_SHAPE", ""), "")
