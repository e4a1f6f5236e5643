"""The public registry: effective providers only, search by English or Chinese name
(partial, case-insensitive, outside the BMP too), district and provider type,
pagination, and never any personal data of user administrators."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from api.services import Services
from registration.rules import check_hkid
from tests.conftest import FrozenClock
from tests.helpers import approved_application, bearer, create_application, submitted_application
from tests.registration.flow import (
    collected_application,
    relogin,
    run_jobs,
)


def _registry(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/registry", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _names(page: dict[str, Any]) -> list[str]:
    return [p["name_en"] for p in page["items"]]


def test_registry_search_privacy_and_pagination(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    # Three effective providers, one approved but not yet effective, a submitted and a
    # draft application (the last three never listed).
    references = [collected_application(client, services, s)[0] for s in samples]
    clock.advance(days=14)
    assert run_jobs(services, "registration.time_rules")["registration.time_rules"].startswith(
        "effective 3,"
    )
    waiting = {**samples[0], "provider": {**samples[0]["provider"], "name_en": "Waiting Clinic"}}
    approved_application(client, services, waiting)
    submitted = {**samples[1], "provider": {**samples[1]["provider"], "name_en": "Queued Clinic"}}
    submitted_application(client, submitted)
    create_application(client, samples[2])

    everything = _registry(client)
    assert everything["total"] == 3
    assert _names(everything) == [
        "Dr Chan Tai Man Clinic",
        "Harbour Family Medicine Group Limited",
        "Kowloon Bay Medical Laboratory",
    ]
    harbour = everything["items"][1]
    assert harbour == {
        "provider_type": "medical_group",
        "name_en": "Harbour Family Medicine Group Limited",
        "name_zh": "海港家庭醫學集團有限公司",
        "service_locations": [
            {
                "name_en": loc["name_en"],
                "name_zh": loc["name_zh"],
                "address": loc["address"],
                "district": loc["district"],
                "phone": loc["phone"],
                "opening_status": "open",
            }
            for loc in samples[1]["service_locations"]
        ],
    }

    # Search: English (partial, any case), Chinese (partial, outside the BMP too),
    # location names, and characters that mean something to LIKE taken literally.
    for q, expected in (
        ("harbour", ["Harbour Family Medicine Group Limited"]),
        ("HARBOUR family", ["Harbour Family Medicine Group Limited"]),
        (
            "  MEDIC  ",
            ["Harbour Family Medicine Group Limited", "Kowloon Bay Medical Laboratory"],
        ),
        ("海港", ["Harbour Family Medicine Group Limited"]),
        ("醫學", ["Harbour Family Medicine Group Limited", "Kowloon Bay Medical Laboratory"]),
        ("𨋢", ["Harbour Family Medicine Group Limited"]),
        ("屯門𨋢口", ["Harbour Family Medicine Group Limited"]),
        ("九龍灣", ["Kowloon Bay Medical Laboratory"]),
        ("化验", []),  # Simplified 化验 is not Traditional 化驗: names match as written
        ("陳大文", ["Dr Chan Tai Man Clinic"]),
        ("tsim sha tsui", ["Dr Chan Tai Man Clinic"]),  # a location's name
        ("尖沙咀診所", ["Dr Chan Tai Man Clinic"]),
        ("診所", ["Dr Chan Tai Man Clinic", "Harbour Family Medicine Group Limited"]),
        ("%", []),
        ("_", []),
        ("/", []),
        ("Waiting", []),
        ("Queued", []),
        ("", _names(everything)),
    ):
        page = _registry(client, q=q)
        assert _names(page) == expected, q
        assert page["total"] == len(expected), q

    assert _names(_registry(client, district="Tuen Mun")) == [
        "Harbour Family Medicine Group Limited"
    ]
    assert _names(_registry(client, district="Kwun Tong")) == ["Kowloon Bay Medical Laboratory"]
    assert _names(_registry(client, district="Islands")) == []
    assert _names(_registry(client, provider_type="laboratory")) == [
        "Kowloon Bay Medical Laboratory"
    ]
    assert _names(_registry(client, provider_type="solo_practice", q="clinic")) == [
        "Dr Chan Tai Man Clinic"
    ]
    assert _registry(client, provider_type="pharmacy")["total"] == 0

    pages = [_registry(client, limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [p["total"] for p in pages] == [3, 3, 3]
    assert [_names(p) for p in pages] == [_names(everything)[:2], _names(everything)[2:], []]

    for params in (
        {"q": "x" * 101},
        {"q": "nul\x00"},
        {"district": "Kowloon"},
        {"provider_type": "spa"},
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"offset": 2**31},
    ):
        response = client.get("/api/v1/registry", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["code"] == "invalid_request"

    # Privacy: nothing about the user administrators (names, identity numbers in any
    # form, emails, phones), nor contact emails, business registration numbers or
    # references, in any answer.
    text = json.dumps(
        [_registry(client, limit=100), _registry(client, q="clinic")], ensure_ascii=False
    )
    forbidden = list(references)
    for sample in samples:
        forbidden += [
            sample["provider"]["email"],
            sample["provider"]["business_registration_number"],
        ]
        for admin in sample["user_admins"]:
            normalised = check_hkid(admin["identity_document"])
            forbidden += [
                admin["name"],
                admin["email"],
                admin["phone"],
                admin["position"],
                admin["identity_document"],
                normalised,
                normalised[1:7],  # the digits
                normalised[-4:],  # the last four the review shows
            ]
    # What the registry may show (a location's phone can contain an identity card's six
    # digits by chance, e.g. 23456789 and K234567(6)) is taken out before looking.
    rest = text
    for sample in samples:
        for location in sample["service_locations"]:
            for value in location.values():
                rest = rest.replace(value, "")
    leaked = [value for value in forbidden if value in rest]
    assert leaked == []
    for key in ("user_admins", "identity_document", "email", "reference", "contact_email"):
        assert f'"{key}"' not in text

    # No login needed, and a token changes nothing.
    assert client.get("/api/v1/registry", headers=bearer("not-a-token")).status_code == 200


def test_removed_locations_and_withdrawn_providers_leave_the_registry(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    reference, _token, _codes, _body = collected_application(client, services, samples[1])
    clock.advance(days=14, seconds=1)
    run_jobs(services, "registration.time_rules")
    base = f"/api/v1/applications/{reference}"
    token = relogin(client, reference)
    assert _registry(client, q="𨋢")["total"] == 1
    response = client.post(
        f"{base}/service-locations/3/remove", json={"reason": "closed"}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert _registry(client, q="𨋢")["total"] == 0
    assert _registry(client, district="Tuen Mun")["total"] == 0
    listed = _registry(client, q="harbour")["items"][0]["service_locations"]
    assert [loc["name_en"] for loc in listed] == ["Central Clinic", "Sham Shui Po Clinic"]
    clock.advance(minutes=1)
    withdrawn = client.post(f"{base}/withdraw", json={"reason": "closing"}, headers=bearer(token))
    assert withdrawn.status_code == 200, withdrawn.text
    assert _registry(client)["total"] == 0
