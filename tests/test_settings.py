"""Settings: layered precedence, parsing of command-line strings, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from crawler import Settings, SettingsError
from crawler.errors import ConfigError


def build(**values: Any) -> Settings:
    return Settings.build(("-s", values))


def test_defaults() -> None:
    settings = Settings()
    assert settings.CONCURRENCY == 16
    assert settings.CONCURRENCY_PER_HOST == 8
    assert settings.DOWNLOAD_DELAY == 0.0
    assert settings.COOKIE_JAR == "strict"
    assert settings.RESOLVE == {}
    assert Settings.build() == settings


def test_layers_apply_lowest_precedence_first() -> None:
    settings = Settings.build(
        ("pyproject.toml", {"CONCURRENCY": 4, "DEPTH_LIMIT": 3, "USER_AGENT": "project"}),
        ("spider settings", {"CONCURRENCY": 8, "USER_AGENT": "spider"}),
        ("-s", {"CONCURRENCY": "32"}),
    )
    assert settings.CONCURRENCY == 32  # command line wins
    assert settings.USER_AGENT == "spider"  # spider beats pyproject
    assert settings.DEPTH_LIMIT == 3  # pyproject beats the default
    assert settings.MAX_PAGES == 0  # untouched default


def test_settings_are_immutable_and_merged_returns_a_copy() -> None:
    base = Settings()
    changed = base.merged({"MAX_PAGES": 5})
    assert (base.MAX_PAGES, changed.MAX_PAGES) == (0, 5)
    with pytest.raises(AttributeError):
        base.MAX_PAGES = 3  # type: ignore[misc]


def test_mutable_defaults_are_not_shared() -> None:
    one, two = Settings(), Settings()
    one.RESOLVE["x.test"] = "127.0.0.1"
    assert two.RESOLVE == {}
    assert Settings().DEFAULT_HEADERS == {}


def test_unknown_name_suggests_the_closest_and_names_the_source() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.build(("pyproject.toml", {"CONCURENCY": 3}))
    message = str(info.value)
    assert "unknown setting 'CONCURENCY' in pyproject.toml" in message
    assert "did you mean CONCURRENCY?" in message


def test_lower_case_name_gets_the_upper_case_suggestion() -> None:
    with pytest.raises(SettingsError, match=r"did you mean DOWNLOAD_DELAY\?"):
        build(download_delay=1)


def test_unknown_name_without_a_close_match_has_no_suggestion() -> None:
    with pytest.raises(SettingsError) as info:
        build(XYZZY=1)
    assert "did you mean" not in str(info.value)
    assert "every name is in docs/settings.md" in str(info.value)
    assert "USER_AGENT" not in str(info.value)  # never the whole list


@pytest.mark.parametrize(
    ("scrapy_name", "ours"),
    [
        ("CONCURRENT_REQUESTS", "CONCURRENCY"),
        ("CONCURRENT_REQUESTS_PER_DOMAIN", "CONCURRENCY_PER_HOST"),
        ("DOWNLOAD_TIMEOUT", "REQUEST_TIMEOUT"),
        ("DOWNLOAD_MAXSIZE", "MAX_RESPONSE_SIZE"),
        ("CLOSESPIDER_PAGECOUNT", "MAX_PAGES"),
        ("CLOSESPIDER_ITEMCOUNT", "MAX_ITEMS"),
        ("ITEM_PIPELINES", "PIPELINES"),
        ("autothrottle_enabled", "AUTOTHROTTLE"),
    ],
)
def test_scrapy_setting_names_are_answered_with_ours(scrapy_name: str, ours: str) -> None:
    with pytest.raises(SettingsError) as info:
        build(**{scrapy_name: 1})
    message = str(info.value)
    assert message.endswith(f"that is Scrapy's name; use {ours}")
    assert "\n" not in message and len(message) < 200


def test_scrapy_names_that_are_ours_too_are_accepted() -> None:
    settings = build(ROBOTSTXT_OBEY=False, DOWNLOAD_DELAY=0.5, USER_AGENT="x")
    assert (settings.ROBOTSTXT_OBEY, settings.DOWNLOAD_DELAY) == (False, 0.5)


def test_a_typo_lists_at_most_three_close_names() -> None:
    with pytest.raises(SettingsError) as info:
        build(PROXYS=1)
    message = str(info.value)
    assert "did you mean PROXY? (also close: PROXIES, PROXY_FILE)" in message
    assert message.count(",") <= 2


def test_settings_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        build(NOPE=1)


def test_a_bad_layer_fails_even_if_a_later_layer_would_fix_it() -> None:
    with pytest.raises(SettingsError, match=r"\(spider settings\)"):
        Settings.build(
            ("spider settings", {"CONCURRENCY_PER_HOST": 0}), ("-s", {"CONCURRENCY_PER_HOST": 2})
        )


@pytest.mark.parametrize(
    ("name", "value", "parsed"),
    [
        ("CONCURRENCY", "32", 32),
        ("CONCURRENCY", " 7 ", 7),
        ("MAX_RESPONSE_SIZE", "1_000_000", 1_000_000),
        ("DOWNLOAD_DELAY", "0.25", 0.25),
        ("DOWNLOAD_DELAY", 2, 2.0),
        ("REQUEST_TIMEOUT", "1e1", 10.0),
        ("USER_AGENT", "bot/1.0 (+http://a.test)", "bot/1.0 (+http://a.test)"),
        ("LOG_LEVEL", "debug", "DEBUG"),
        ("COOKIE_JAR", "Unsafe", "unsafe"),
        ("PIPELINES", "a.mod:One, b.mod:Two", ["a.mod:One", "b.mod:Two"]),
        ("PIPELINES", '["a.mod:One"]', ["a.mod:One"]),
        ("DEFAULT_HEADERS", '{"Accept-Language": "en"}', {"Accept-Language": "en"}),
        ("DEFAULT_HEADERS", "X-One:1,X-Two:2", {"X-One": "1", "X-Two": "2"}),
    ],
)
def test_command_line_strings_are_parsed(name: str, value: Any, parsed: Any) -> None:
    assert getattr(build(**{name: value}), name) == parsed


def test_resolve_parses_host_ip_pairs() -> None:
    settings = build(RESOLVE="a.test:1.2.3.4, b.test:5.6.7.8")
    assert settings.RESOLVE == {"a.test": "1.2.3.4", "b.test": "5.6.7.8"}
    assert build(RESOLVE="v6.test:::1").RESOLVE == {"v6.test": "::1"}
    assert build(RESOLVE={"a.test": "127.0.0.1"}).RESOLVE == {"a.test": "127.0.0.1"}


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("a.test1.2.3.4", r"expected key:value pairs separated by commas, got 'a.test1.2.3.4'"),
        (":1.2.3.4", r"expected key:value pairs"),
        ("a.test:localhost", r"a.test:localhost does not map to an IP address"),
        ('{"a.test": 1}', r"expected string keys and values"),
        ("{not json", r"bad value RESOLVE="),
        (["a.test:1.2.3.4"], r"expected a mapping, got list"),
    ],
)
def test_bad_resolve_values(value: Any, pattern: str) -> None:
    with pytest.raises(SettingsError, match=pattern) as info:
        build(RESOLVE=value)
    assert "RESOLVE" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "pattern"),
    [
        ("CONCURRENCY", "abc", r"bad value CONCURRENCY='abc' \(-s\): expected an integer"),
        ("CONCURRENCY", "2.5", r"expected an integer"),
        ("CONCURRENCY", 2.5, r"expected an integer, got float"),
        ("CONCURRENCY", True, r"expected an integer, got bool"),
        ("CONCURRENCY", None, r"expected an integer, got NoneType"),
        ("DOWNLOAD_DELAY", "soon", r"bad value DOWNLOAD_DELAY='soon' \(-s\): expected a number"),
        ("DOWNLOAD_DELAY", False, r"expected a number, got bool"),
        ("DOWNLOAD_DELAY", "nan", r"expected a finite number"),
        ("REQUEST_TIMEOUT", "inf", r"expected a finite number"),
        ("COOKIE_JAR", "lax", r"bad value COOKIE_JAR='lax' \(-s\): must be one of strict, unsafe"),
        ("LOG_LEVEL", "chatty", r"must be one of DEBUG, INFO"),
        ("USER_AGENT", 5, r"expected a string, got int"),
        ("DEFAULT_HEADERS", {"X-Num": 1}, r"expected string keys and values"),
        ("DEFAULT_HEADERS", "[1, 2]", r"expected key:value pairs"),
        ("PIPELINES", '{"a": 1}', None),  # not a list: taken as one comma-separated entry
        ("PIPELINES", 5, r"expected a list, got int"),
    ],
)
def test_bad_values_name_the_setting_value_and_expectation(
    name: str, value: Any, pattern: str | None
) -> None:
    if pattern is None:
        assert getattr(build(**{name: value}), name) == [value]
        return
    with pytest.raises(SettingsError, match=pattern) as info:
        build(**{name: value})
    assert f"{name}=" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "minimum"),
    [
        ("CONCURRENCY", -1, "0"),
        ("CONCURRENCY_PER_HOST", "0", "1"),
        ("MAX_SESSIONS", 0, "1"),
        ("DOWNLOAD_DELAY", -0.5, "0"),
        ("DEPTH_LIMIT", -1, "0"),
        ("MAX_PAGES", "-1", "0"),
        ("MAX_REDIRECTS", -1, "0"),
        ("REQUEST_TIMEOUT", 0, "0.001"),
        ("PROGRESS_INTERVAL", -1, "0"),
    ],
)
def test_minimum_bounds(name: str, value: Any, minimum: str) -> None:
    with pytest.raises(SettingsError, match=rf"bad value {name}=.*must be >= {minimum}"):
        build(**{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONCURRENCY_PER_HOST", 1),
        ("DOWNLOAD_DELAY", 0),
        ("DEPTH_LIMIT", 0),
        ("REQUEST_TIMEOUT", 0.001),
    ],
)
def test_the_minimum_itself_is_allowed(name: str, value: Any) -> None:
    assert getattr(build(**{name: value}), name) == value


def test_describe_and_to_dict_cover_every_setting() -> None:
    names = Settings.names()
    assert [row[0] for row in Settings.describe()] == names
    assert all(doc for _, doc, _ in Settings.describe())
    assert list(Settings().to_dict()) == names
    assert dict((name, default) for name, _, default in Settings.describe()) == Settings().to_dict()


def test_scrapy_names_are_one_table_of_our_settings() -> None:
    """Every Scrapy name maps to one of our settings; those read as they are are a subset."""
    from crawler.scrapy_names import SCRAPY_SAME_VALUE, SCRAPY_SETTINGS
    from crawler.settings import Settings

    ours = set(Settings.__dataclass_fields__)
    assert set(SCRAPY_SETTINGS.values()) <= ours
    assert SCRAPY_SAME_VALUE <= set(SCRAPY_SETTINGS)
