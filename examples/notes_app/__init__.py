"""A notes app (Flask, SQLAlchemy, Flask-Login) that keeps the data-use promise.

Each user signs up, signs in and keeps notes; each user is a tenant. Note
bodies are content (``customer_data.content.document``) and e-mail
addresses are customer data, each declared once, where the field is
declared. Nothing in the app labels a value by hand: SQLAlchemy labels what
it loads, pydantic labels what the request body carries.

The app also has the features a growth team asks for and the promise
forbids: ads chosen from the notes, a newsletter to every user, and
product analytics over note text without the tenant's consent. In enforce
mode they answer 403 and nothing leaves; in trace mode they run and every
violation is recorded::

    from notes_app import create_app

    app = create_app("sqlite:///notes.db", mode="enforce")
    app.run(port=5000)

Run it with ``python -m notes_app`` from the ``examples`` folder.
"""

from .app import create_app

__all__ = ["create_app"]
