"""The Flask app: sign-up and sign-in, notes, and the features under review."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, abort, g, jsonify, request
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from purposeguard.integrations import wsgi as pg_wsgi
from pydantic import ValidationError
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

import purposeguard as pg
from purposeguard.consent import ConsentStore

from . import features
from .forms import NoteIn, SignIn, SignUp
from .models import Base, Note, User


def create_app(
    database_url: str,
    *,
    mode: str = "enforce",
    context_mode: str | None = None,
    consents: str | None = None,
    secret_key: str | None = None,
) -> Flask:
    """The app on ``database_url``; ``consents`` is where tenants' consent is kept.

    ``context_mode="enforce"`` refuses flows seen only through the request's
    zone too (values rebuilt without their label), not just the pack's
    never-rules."""
    store = ConsentStore(consents) if consents else None
    pg.configure("trust-center", mode=mode, context_mode=context_mode, consents=store)
    pg_sqlalchemy.instrument()

    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)

    app = Flask(__name__)
    app.config["SECRET_KEY"] = secret_key or secrets.token_hex(32)
    app.extensions["notes.engine"] = engine
    login = LoginManager(app)
    pg_wsgi.init_app(app)

    def db() -> Session:
        if "db" not in g:
            g.db = sessions()
        return g.db

    def body(model: Any) -> Any:
        try:
            return model.model_validate(request.get_json(force=True, silent=True) or {})
        except ValidationError as error:
            raise _Invalid(error) from None

    @login.user_loader
    def load_user(user_id: str) -> User | None:
        return db().get(User, int(user_id))

    @login.unauthorized_handler
    def unauthorized() -> Any:
        return jsonify(error="sign in first"), 401

    @app.before_request
    def name_the_tenant() -> None:
        # Once Flask-Login knows the user, the request's zone is the user's tenant's.
        if current_user.is_authenticated:
            pg.set_tenant(current_user.tenant)

    @app.teardown_appcontext
    def close_db(_error: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    @app.errorhandler(_Invalid)
    def invalid(error: _Invalid) -> Any:
        return jsonify(error="invalid request", fields=sorted({str(e["loc"][0]) for e in error.errors})), 400

    # -- accounts ------------------------------------------------------------------------

    @app.post("/signup")
    def signup() -> Any:
        form = body(SignUp)
        if db().scalar(select(User.id).where(User.username == form.username)) is not None:
            return jsonify(error="username taken"), 409
        user = User(
            tenant="t-" + secrets.token_hex(6),
            username=form.username,
            password_hash=generate_password_hash(form.password),
            email=form.email,
        )
        db().add(user)
        db().commit()
        return jsonify(id=user.id), 201

    @app.post("/login")
    def sign_in() -> Any:
        form = body(SignIn)
        user = db().scalar(select(User).where(User.username == form.username))
        if user is None or not check_password_hash(user.password_hash, form.password):
            return jsonify(error="wrong username or password"), 401
        login_user(user)
        return jsonify(id=user.id)

    @app.post("/logout")
    def sign_out() -> Any:
        logout_user()
        return jsonify(ok=True)

    # -- notes ---------------------------------------------------------------------------

    def own_note(note_id: int) -> Note:
        note = db().scalar(select(Note).where(Note.id == note_id, Note.owner_id == current_user.id))
        if note is None:
            abort(404)
        return note

    @app.get("/notes")
    @login_required
    def list_notes() -> Any:
        notes = db().scalars(select(Note).where(Note.owner_id == current_user.id).order_by(Note.id))
        return jsonify([{"id": n.id, "title": n.title, "preview": features.preview(n.body)} for n in notes])

    @app.post("/notes")
    @login_required
    def add_note() -> Any:
        form = body(NoteIn)
        note = Note(tenant=current_user.tenant, owner_id=current_user.id, title=form.title, body=form.body)
        db().add(note)
        db().commit()
        return jsonify(id=note.id), 201

    @app.get("/notes/<int:note_id>")
    @login_required
    def show_note(note_id: int) -> Any:
        note = own_note(note_id)
        return jsonify(id=note.id, title=note.title, body=note.body)

    @app.get("/search")
    @login_required
    def search() -> Any:
        words = request.args.get("q", "").split()
        rows = db().execute(select(Note.id, Note.body).where(Note.owner_id == current_user.id))
        return jsonify([row.id for row in rows if features.matches(row.body, words)])

    # -- what the growth team asked for -----------------------------------------------

    @app.get("/promotion")
    @login_required
    def promotion() -> Any:
        return jsonify(ad=features.house_ad())

    @app.get("/notes/<int:note_id>/ad")
    @login_required
    def ad_for_note(note_id: int) -> Any:
        return jsonify(ad=features.pick_ad(own_note(note_id).body))

    @app.post("/newsletter")
    @login_required
    def newsletter() -> Any:
        for user in db().scalars(select(User).where(User.newsletter.is_(True))):
            features.send_newsletter(user.email)
        return jsonify(sent=len(features.OUTBOX.sent))

    @app.post("/insights")
    @login_required
    def insights() -> Any:
        notes = db().scalars(select(Note).where(Note.owner_id == current_user.id))
        return jsonify(words=sum(features.count_words(n.body) for n in notes))

    @app.post("/settings/analytics")
    @login_required
    def analytics_consent() -> Any:
        if store is None:
            return jsonify(error="this deployment keeps no consent"), 501
        store.grant(current_user.tenant, "improvement", ["customer_data"], granted_by=current_user.username)
        return jsonify(ok=True)

    return app


class _Invalid(Exception):
    def __init__(self, error: ValidationError) -> None:
        super().__init__("invalid request body")
        self.errors = error.errors()
