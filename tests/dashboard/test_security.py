"""The dashboard's security rules: token auth, CSRF, Origin, read-only, hosts, headers, CLI."""

from __future__ import annotations

import hmac

import pytest
from click.testing import CliRunner

import laneway
from laneway.dashboard import _security, create_app
from laneway.dashboard._cli import dashboard_command

from .conftest import status_of

TOKEN = "s3cret-token-for-tests-0123456789"
PUBLIC = "http://dash.example.com"
GET_ROUTES = [
    "/",
    "/queues/billing",
    "/jobs",
    "/jobs?status=dead",
    "/dead",
    "/bus",
    "/metrics",
    "/static/dashboard.css",
    "/static/dashboard.js",
    "/nope",
]
POST_ROUTES = ["/jobs/{id}/retry", "/jobs/{id}/cancel", "/dead/retry", "/dead/purge", "/logout"]


@pytest.fixture
def guarded(shop, client_for):
    """A dashboard with a token, as served on a public address."""
    return client_for(create_app(shop.app, token=TOKEN), base_url=PUBLIC)


def bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path", GET_ROUTES)
def test_every_page_without_the_token_is_401(guarded, path):
    answer = guarded.get(path)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "billing" not in answer.text


@pytest.mark.parametrize("path", POST_ROUTES)
def test_every_action_without_the_token_is_401_and_changes_nothing(shop, guarded, path):
    answer = guarded.post(path.format(id=shop.stuck.id), {"csrf": "x"})

    assert answer.status_code == 401
    assert status_of(shop.app, shop.stuck) is laneway.Status.DEAD


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN, "Bearer s3cret"])
def test_a_wrong_or_malformed_token_is_401(guarded, header):
    assert guarded.get("/", headers={"authorization": header}).status_code == 401


def test_the_bearer_token_opens_every_page(shop, guarded):
    for path in GET_ROUTES[:-1]:
        assert guarded.get(path, headers=bearer()).status_code == 200, path
    assert guarded.get(f"/jobs/{shop.stuck.id}", headers=bearer()).status_code == 200


def test_a_browser_without_the_token_gets_the_login_form_with_401(guarded):
    answer = guarded.get("/dead", headers={"accept": "text/html"})

    assert answer.status_code == 401
    assert 'action="/login"' in answer.text
    assert 'name="next" value="/dead"' in answer.text
    assert "style-src 'nonce-" in answer.headers["content-security-policy"]


def test_login_with_the_token_sets_a_strict_httponly_session_cookie(guarded):
    token = guarded.csrf("/login")
    answer = guarded.post("/login", {"csrf": token, "token": TOKEN, "next": "/dead"})

    assert answer.status_code == 303
    assert answer.headers["location"] == "/dead"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{_security.SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie
    assert guarded.get("/dead").status_code == 200


def test_login_with_a_wrong_token_is_refused(guarded):
    token = guarded.csrf("/login")
    answer = guarded.post("/login", {"csrf": token, "token": "guess"})

    assert answer.status_code == 401
    assert "not right" in answer.text
    assert guarded.get("/").status_code == 401


def test_login_needs_a_csrf_token_and_the_same_origin(guarded):
    token = guarded.csrf("/login")

    assert guarded.post("/login", {"token": TOKEN}).status_code == 403
    assert (
        guarded.post("/login", {"csrf": token, "token": TOKEN}, origin="https://evil.example").status_code
        == 403
    )


def test_sign_out_ends_the_session(guarded):
    token = guarded.csrf("/login")
    guarded.post("/login", {"csrf": token, "token": TOKEN})
    page_token = guarded.csrf("/")
    answer = guarded.post("/logout", {"csrf": page_token})

    assert answer.status_code == 303
    assert guarded.get("/").status_code == 401


def test_tokens_are_compared_in_constant_time(guarded, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(_security.hmac, "compare_digest", spy)
    guarded.get("/", headers=bearer())

    assert (TOKEN.encode(), TOKEN.encode()) in calls


@pytest.fixture
def local(shop, client_for):
    return client_for(create_app(shop.app))


def test_a_post_without_a_csrf_token_is_403(shop, local):
    local.csrf()
    answer = local.post(f"/jobs/{shop.stuck.id}/retry", {})

    assert answer.status_code == 403
    assert status_of(shop.app, shop.stuck) is laneway.Status.DEAD


def test_a_post_with_a_forged_csrf_token_is_403(shop, local):
    local.csrf()
    answer = local.post(f"/jobs/{shop.stuck.id}/retry", {"csrf": "0" * 64})

    assert answer.status_code == 403
    assert status_of(shop.app, shop.stuck) is laneway.Status.DEAD


def test_a_csrf_token_only_works_with_its_own_cookie(shop, local, client_for):
    other = client_for(create_app(shop.app))
    stolen = other.csrf()
    local.csrf()

    assert local.post(f"/jobs/{shop.stuck.id}/retry", {"csrf": stolen}).status_code == 403


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:9999", "null"])
def test_a_post_from_a_foreign_origin_is_403_even_with_a_valid_csrf_token(shop, local, origin):
    token = local.csrf()
    answer = local.post(f"/jobs/{shop.stuck.id}/retry", {"csrf": token}, origin=origin)

    assert answer.status_code == 403
    assert status_of(shop.app, shop.stuck) is laneway.Status.DEAD


def test_a_post_without_origin_needs_a_same_site_referer(shop, local):
    token = local.csrf()
    path = f"/jobs/{shop.stuck.id}/retry"

    assert local.post(path, {"csrf": token}, origin=None).status_code == 403
    assert (
        local.post(
            path, {"csrf": token}, origin=None, headers={"referer": "https://evil.example/dead"}
        ).status_code
        == 403
    )
    ok = local.post(path, {"csrf": token}, origin=None, headers={"referer": "http://127.0.0.1:8080/dead"})
    assert ok.status_code == 303


def test_mutations_are_post_only(shop, local):
    assert local.get(f"/jobs/{shop.stuck.id}/retry").status_code == 405
    assert local.get("/dead/purge").status_code == 405


def test_an_oversized_form_is_refused(shop, local):
    token = local.csrf()
    answer = local.post(f"/jobs/{shop.stuck.id}/retry", {"csrf": token, "pad": "x" * 70_000})

    assert answer.status_code == 400


@pytest.fixture
def read_only(shop, client_for):
    return client_for(create_app(shop.app, read_only=True))


def test_read_only_hides_the_buttons(shop, read_only):
    for path in ["/dead", f"/jobs/{shop.stuck.id}", "/jobs"]:
        html = read_only.get(path).text
        assert "/retry" not in html and "/purge" not in html and "/cancel" not in html, path
    assert "read-only" in read_only.get("/").text


@pytest.mark.parametrize("path", ["/jobs/{id}/retry", "/jobs/{id}/cancel", "/dead/retry", "/dead/purge"])
def test_read_only_refuses_every_mutation(shop, read_only, path):
    token = read_only.csrf()
    answer = read_only.post(path.format(id=shop.stuck.id), {"csrf": token})

    assert answer.status_code == 403
    assert status_of(shop.app, shop.stuck) is laneway.Status.DEAD


def test_without_a_token_only_loopback_host_names_are_answered(shop, client_for):
    web = create_app(shop.app)

    assert client_for(web, base_url="http://attacker.example:8080").get("/").status_code == 403
    assert client_for(web, base_url="http://localhost:8080").get("/").status_code == 200
    assert client_for(web, base_url="http://[::1]:8080").get("/").status_code == 200


def test_allowed_hosts_limit_the_host_names_answered(shop, client_for):
    web = create_app(shop.app, token=TOKEN, allowed_hosts=["dash.example.com"])

    assert client_for(web, base_url=PUBLIC).get("/", headers=bearer()).status_code == 200
    assert client_for(web, base_url="http://other.example").get("/", headers=bearer()).status_code == 403


def test_every_answer_carries_the_security_headers(local):
    answer = local.get("/")

    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_an_empty_token_is_refused(shop):
    with pytest.raises(ValueError, match="empty"):
        create_app(shop.app, token="")


@pytest.fixture
def served(monkeypatch):
    """Runs ``laneway dashboard`` with uvicorn replaced by a recorder."""
    import uvicorn

    runs = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append(kw))
    monkeypatch.delenv("LANEWAY_DASHBOARD_TOKEN", raising=False)
    return runs


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "dash.example.com"])
def test_cli_refuses_a_public_address_without_a_token(served, host):
    result = CliRunner().invoke(dashboard_command, ["--url", "memory://", "--host", host])

    assert result.exit_code == 2
    assert "refusing to bind" in result.output
    assert served == []


def test_cli_binds_a_public_address_with_a_token_from_the_environment(served):
    result = CliRunner().invoke(
        dashboard_command,
        ["--url", "memory://", "--host", "0.0.0.0", "--port", "9999"],
        env={"LANEWAY_DASHBOARD_TOKEN": TOKEN},
    )

    assert result.exit_code == 0, result.output
    assert served == [
        {"host": "0.0.0.0", "port": 9999, "log_level": "info", "server_header": False, "proxy_headers": False}
    ]
    assert "token required" in result.output


def test_cli_binds_loopback_without_a_token_and_warns_about_short_tokens(served):
    plain = CliRunner().invoke(dashboard_command, ["--url", "memory://"])
    short = CliRunner().invoke(dashboard_command, ["--url", "memory://", "--token", "short", "--read-only"])

    assert plain.exit_code == 0 and served[0]["host"] == "127.0.0.1"
    assert short.exit_code == 0 and "shorter than 16" in short.output and "(read-only)" in short.output


def test_the_laneway_command_offers_the_dashboard(served):
    from laneway.cli import cli

    result = CliRunner().invoke(cli, ["dashboard", "--url", "memory://", "--port", "8181"])

    assert result.exit_code == 0, result.output
    assert served[0]["port"] == 8181
