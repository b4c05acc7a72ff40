"""The menu and the pages agree: for every menu entry and every role, the page answers 200 exactly when the menu shows
it to that role, and the 403 page otherwise. Both read their roles from ``console.roles``; this holds them to it,
including for a page whose checks live elsewhere."""

from __future__ import annotations

from fastapi.testclient import TestClient

from console.nav import NAV, nav_for
from console.staff.models import Role
from tests.console.conftest import MakeStaff, login


def test_every_menu_page_opens_exactly_for_the_roles_it_is_shown_to(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    pages = sorted({item.href for item in NAV})
    seen: dict[tuple[str, Role], tuple[bool, int]] = {}
    for role in Role:
        agency = None if role == Role.province_admin else "AGC-A"
        staff = make_staff(f"{role.value}@menu.gov.vn", role=role.value, agency=agency)
        assert login(client, staff.email, staff.password).status_code == 303
        shown = {item.href for item in nav_for(role)}
        home = client.get("/console/?lang=en").text
        for href in pages:
            assert (f'href="{href}?lang=en"' in home) is (href in shown), (role, href)
            # An agency admin's agencies entry leads, through a redirect, to their own agency's page.
            response = client.get(href, params={"lang": "en"})
            assert response.url.path.startswith(href) and "/login" not in response.url.path, (role, href)
            seen[(href, role)] = (href in shown, response.status_code)
        client.cookies.clear()
    wrong = {key: got for key, got in seen.items() if got[1] != (200 if got[0] else 403)}
    assert wrong == {}
