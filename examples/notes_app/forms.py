"""Request bodies: validated by pydantic, so what a request carries is labelled on arrival."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

import purposeguard as pg

from .models import CONTENT


class SignUp(BaseModel):
    username: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=8)
    email: Annotated[str, pg.Category("customer_data")] = Field(pattern=r"^[^@\s]+@[^@\s]+$")


class SignIn(BaseModel):
    username: str
    password: str


class NoteIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: Annotated[str, pg.Category(CONTENT)]
