"""Configuration parsing and name rules."""

from __future__ import annotations

import pytest

from corral.domain.configuration import parse_configuration, properties_of, with_application_name
from corral.domain.names import check_application_name, check_name
from corral.errors import InvalidInput

SERVICE = "mule.agent.application.properties.service"


def test_properties_become_text() -> None:
    conf = parse_configuration(
        f'{{"{SERVICE}": {{"properties": {{"http.port": 8081, "on": true, "none": null}}}}}}'
    )
    assert properties_of(conf) == {"http.port": "8081", "on": "true", "none": ""}
    assert properties_of({}) == {}


@pytest.mark.parametrize(
    "raw", ["[1]", "{bad", f'{{"{SERVICE}": []}}', f'{{"{SERVICE}": {{"properties": {{"a": [1]}}}}}}']
)
def test_bad_configuration(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_configuration(raw)


def test_application_name_is_kept_in_sync() -> None:
    conf = with_application_name({SERVICE: {"applicationName": "old", "properties": {}}}, "new")
    assert conf[SERVICE]["applicationName"] == "new"
    assert with_application_name({}, "x") == {}


@pytest.mark.parametrize("name", ["web", "a.b-c_d", "9lives", "x" * 128])
def test_good_app_names(name: str) -> None:
    assert check_application_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b", "x" * 129, "sp ace", 5])
def test_bad_app_names(name: object) -> None:
    with pytest.raises(InvalidInput):
        check_application_name(name)


def test_display_names() -> None:
    assert check_name("  my server ", "name") == "my server"
    for bad in ("", "   ", "a\nb", "x" * 256, None):
        with pytest.raises(InvalidInput):
            check_name(bad, "name")
