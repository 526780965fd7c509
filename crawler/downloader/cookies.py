"""Cookie jars: strict, unsafe (IP hosts) or none; seeded with configured cookies."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

import aiohttp
from aiohttp.abc import AbstractCookieJar
from yarl import URL

__all__ = ["check_cookies", "jar_cookies_for", "make_cookie_jar", "seed_cookies"]

JAR_KINDS = ("strict", "unsafe", "none")


def make_cookie_jar(kind: str) -> AbstractCookieJar:
    """A cookie jar of the configured kind: strict, unsafe (IP hosts allowed) or none."""
    if kind == "none":
        return aiohttp.DummyCookieJar()
    return aiohttp.CookieJar(unsafe=(kind == "unsafe"))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_cookies(cookies: Mapping[str, str], where: str) -> dict[str, str]:
    """``cookies`` as a dict, or a SettingsError naming the cookie that cannot be sent."""
    from ..errors import SettingsError

    if not isinstance(cookies, Mapping):
        raise SettingsError(f"bad value {where}: expected {{name: value}}, got {cookies!r:.80}")
    morsels: SimpleCookie = SimpleCookie()
    for name, value in cookies.items():
        try:
            if not isinstance(name, str) or not isinstance(value, str):
                raise CookieError("names and values must be strings")
            morsels[name] = value
        except CookieError as exc:
            raise SettingsError(
                f"bad value {where}: cookie {name!r}={value!r:.40} cannot be sent ({exc})"
            ) from None
    return dict(cookies)


def seed_cookies(jar: AbstractCookieJar, domain: str, cookies: Mapping[str, str]) -> None:
    """Put ``cookies`` in ``jar`` for ``domain`` and its subdomains, as if the domain set them."""
    if not cookies:
        return
    morsels: SimpleCookie = SimpleCookie()
    for name, value in cookies.items():
        morsels[name] = value
        morsels[name]["path"] = "/"
        if not _is_ip(domain):
            morsels[name]["domain"] = domain
    jar.update_cookies(morsels, URL.build(scheme="http", host=domain))


def jar_cookies_for(jar: AbstractCookieJar, url: str | URL) -> dict[str, str]:
    """The cookies ``jar`` would send with a request to ``url``, as name -> value."""
    return {name: morsel.value for name, morsel in jar.filter_cookies(URL(url)).items()}
