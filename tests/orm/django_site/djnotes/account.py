from collections.abc import Callable
from typing import Any

from .models import Profile


class AccountMiddleware:
    """Loads the signed-in user's profile in every request, as a login layer
    checking the account does. Listed after PurposeGuardMiddleware, so the
    load happens inside the request's zone."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        user = request.user
        if user.is_authenticated:
            profile = Profile.objects.filter(user=user).first()
            request.has_profile = profile is not None
        return self.get_response(request)
