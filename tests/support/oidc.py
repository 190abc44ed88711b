"""A real OpenID Connect provider for the sign-in tests (oidc-provider-mock), and the app's ``[auth]`` secrets
pointing at it.

The provider runs in the test process on a free loopback port. Its sign-in form takes any subject; a subject
seen for the first time gets the claim ``email = <subject>``, so signing in as ``vera@example.com`` gives the app
that email. Any client id and secret are accepted (no registration).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oidc_provider_mock import run_server_in_thread
from playwright.sync_api import Page


@contextmanager
def running_oidc_provider() -> Iterator[str]:
    """The provider's issuer URL (``http://127.0.0.1:<port>``) while it runs."""
    with run_server_in_thread(port=0) as server:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"


def write_auth_secrets(path: Path, issuer: str) -> Path:
    """A secrets.toml with just an ``[auth]`` section for ``issuer`` (roles come from the environment). The
    ``{port}`` in ``redirect_uri`` is filled in by Streamlit with the app's own port."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        'client_id = "avatar-ops-tests"\n'
        f'client_secret = "{secrets.token_urlsafe(16)}"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
    )
    path.chmod(0o600)
    return path


def sign_in(page: Page, app_url: str, email: str, timeout_ms: int = 30_000) -> None:
    """From the app's sign-in page through the provider's form and back, as ``email``."""
    page.goto(app_url)
    page.get_by_role("button", name="Sign in").click(timeout=timeout_ms)
    page.locator("input[name='sub']").fill(email, timeout=timeout_ms)  # the provider's own form
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{app_url}/**", timeout=timeout_ms)


def sign_out(page: Page, timeout_ms: int = 30_000) -> None:
    """The app's Sign out button, then the provider's end-session confirmation, back to the app."""
    page.get_by_role("button", name="Sign out").first.click(timeout=timeout_ms)
    page.get_by_role("button", name="End session").click(timeout=timeout_ms)
