"""Places and networks: a built-in city table and a deterministic map of ISPs, carriers, hosting
and VPN providers to ASNs and address blocks.

Addresses are synthetic but public-looking IPv4 (carved from a fixed list of first octets, a
/12 per network, never private or reserved ranges) and IPv6 from the documentation prefix
``2001:db8::/32``. The same network always has the same ASN, ``ip_type`` and block, so a
detector can learn them.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class City(NamedTuple):
    name: str
    country: str  # ISO 3166-1 alpha-2
    lat: float
    lon: float
    utc_offset_min: int  # standard time; DST is ignored
    weight: float  # relative size within its country (home draws) and as a travel destination


# fmt: off
CITIES: tuple[City, ...] = (
    City("London", "GB", 51.5074, -0.1278, 0, 9.0), City("Manchester", "GB", 53.4808, -2.2426, 0, 2.7),
    City("Birmingham", "GB", 52.4862, -1.8904, 0, 2.6), City("Leeds", "GB", 53.8008, -1.5491, 0, 1.8),
    City("Glasgow", "GB", 55.8642, -4.2518, 0, 1.6), City("Bristol", "GB", 51.4545, -2.5879, 0, 1.2),
    City("Edinburgh", "GB", 55.9533, -3.1883, 0, 1.3), City("Liverpool", "GB", 53.4084, -2.9916, 0, 1.2),
    City("Cardiff", "GB", 51.4816, -3.1791, 0, 0.8), City("Belfast", "GB", 54.5973, -5.9301, 0, 0.8),
    City("Berlin", "DE", 52.5200, 13.4050, 60, 3.7), City("Hamburg", "DE", 53.5511, 9.9937, 60, 1.9),
    City("Munich", "DE", 48.1351, 11.5820, 60, 1.5), City("Cologne", "DE", 50.9375, 6.9603, 60, 1.1),
    City("Frankfurt", "DE", 50.1109, 8.6821, 60, 0.8), City("Stuttgart", "DE", 48.7758, 9.1829, 60, 0.6),
    City("Dusseldorf", "DE", 51.2277, 6.7735, 60, 0.6), City("Leipzig", "DE", 51.3397, 12.3731, 60, 0.6),
    City("Dresden", "DE", 51.0504, 13.7373, 60, 0.5),
    City("Paris", "FR", 48.8566, 2.3522, 60, 4.0), City("Marseille", "FR", 43.2965, 5.3698, 60, 1.2),
    City("Lyon", "FR", 45.7640, 4.8357, 60, 1.1), City("Toulouse", "FR", 43.6047, 1.4442, 60, 0.8),
    City("Nice", "FR", 43.7102, 7.2620, 60, 0.6), City("Nantes", "FR", 47.2184, -1.5536, 60, 0.6),
    City("Bordeaux", "FR", 44.8378, -0.5792, 60, 0.6), City("Lille", "FR", 50.6292, 3.0573, 60, 0.6),
    City("Madrid", "ES", 40.4168, -3.7038, 60, 3.3), City("Barcelona", "ES", 41.3851, 2.1734, 60, 2.5),
    City("Valencia", "ES", 39.4699, -0.3763, 60, 0.8), City("Seville", "ES", 37.3891, -5.9845, 60, 0.7),
    City("Malaga", "ES", 36.7213, -4.4214, 60, 0.6), City("Bilbao", "ES", 43.2630, -2.9350, 60, 0.4),
    City("Rome", "IT", 41.9028, 12.4964, 60, 2.8), City("Milan", "IT", 45.4642, 9.1900, 60, 2.4),
    City("Naples", "IT", 40.8518, 14.2681, 60, 1.0), City("Turin", "IT", 45.0703, 7.6869, 60, 0.9),
    City("Bologna", "IT", 44.4949, 11.3426, 60, 0.4), City("Florence", "IT", 43.7696, 11.2558, 60, 0.4),
    City("Amsterdam", "NL", 52.3676, 4.9041, 60, 1.8), City("Rotterdam", "NL", 51.9244, 4.4777, 60, 1.0),
    City("The Hague", "NL", 52.0705, 4.3007, 60, 0.8), City("Utrecht", "NL", 52.0907, 5.1214, 60, 0.6),
    City("Warsaw", "PL", 52.2297, 21.0122, 60, 1.8), City("Krakow", "PL", 50.0647, 19.9450, 60, 0.8),
    City("Wroclaw", "PL", 51.1079, 17.0385, 60, 0.6), City("Gdansk", "PL", 54.3520, 18.6466, 60, 0.5),
    City("Poznan", "PL", 52.4064, 16.9252, 60, 0.5),
    City("Dublin", "IE", 53.3498, -6.2603, 0, 1.4), City("Cork", "IE", 51.8985, -8.4756, 0, 0.3),
    City("Lisbon", "PT", 38.7223, -9.1393, 0, 1.0), City("Porto", "PT", 41.1579, -8.6291, 0, 0.6),
    City("Brussels", "BE", 50.8503, 4.3517, 60, 1.2), City("Antwerp", "BE", 51.2194, 4.4025, 60, 0.5),
    City("Vienna", "AT", 48.2082, 16.3738, 60, 1.9), City("Stockholm", "SE", 59.3293, 18.0686, 60, 1.0),
    City("Gothenburg", "SE", 57.7089, 11.9746, 60, 0.5), City("Copenhagen", "DK", 55.6761, 12.5683, 60, 0.8),
    City("Zurich", "CH", 47.3769, 8.5417, 60, 0.4), City("Prague", "CZ", 50.0755, 14.4378, 60, 1.3),
    City("Budapest", "HU", 47.4979, 19.0402, 60, 1.7), City("Bucharest", "RO", 44.4268, 26.1025, 120, 1.8),
    City("Athens", "GR", 37.9838, 23.7275, 120, 0.7), City("Helsinki", "FI", 60.1699, 24.9384, 120, 0.6),
    City("Oslo", "NO", 59.9139, 10.7522, 60, 0.7), City("Istanbul", "TR", 41.0082, 28.9784, 180, 1.0),
    City("Kyiv", "UA", 50.4501, 30.5234, 120, 0.6), City("Dubai", "AE", 25.2048, 55.2708, 240, 1.0),
    City("Tel Aviv", "IL", 32.0853, 34.7818, 120, 0.4), City("Marrakesh", "MA", 31.6295, -7.9811, 60, 0.5),
    City("Cairo", "EG", 30.0444, 31.2357, 120, 0.4), City("Lagos", "NG", 6.5244, 3.3792, 60, 0.4),
    City("Cape Town", "ZA", -33.9249, 18.4241, 120, 0.4), City("New York", "US", 40.7128, -74.0060, -300, 2.0),
    City("Los Angeles", "US", 34.0522, -118.2437, -480, 0.8), City("Chicago", "US", 41.8781, -87.6298, -360, 0.5),
    City("Miami", "US", 25.7617, -80.1918, -300, 0.6), City("Toronto", "CA", 43.6532, -79.3832, -300, 0.5),
    City("Mexico City", "MX", 19.4326, -99.1332, -360, 0.4), City("Sao Paulo", "BR", -23.5505, -46.6333, -180, 0.4),
    City("Buenos Aires", "AR", -34.6037, -58.3816, -180, 0.3), City("Bangkok", "TH", 13.7563, 100.5018, 420, 0.8),
    City("Singapore", "SG", 1.3521, 103.8198, 480, 0.5), City("Tokyo", "JP", 35.6762, 139.6503, 540, 0.6),
    City("Mumbai", "IN", 19.0760, 72.8777, 330, 0.4), City("Bali Denpasar", "ID", -8.6705, 115.2126, 480, 0.4),
    City("Sydney", "AU", -33.8688, 151.2093, 600, 0.4), City("Hong Kong", "HK", 22.3193, 114.1694, 480, 0.3),
    City("Ho Chi Minh City", "VN", 10.8231, 106.6297, 420, 0.2), City("Moscow", "RU", 55.7558, 37.6173, 180, 0.2),
)
# fmt: on

#: Where account holders live (share of accounts per country); the rest of the table is for
#: travel and attackers.
HOME_COUNTRY_WEIGHT: dict[str, float] = {
    "GB": 0.26, "DE": 0.18, "FR": 0.12, "ES": 0.10, "IT": 0.08, "NL": 0.06, "PL": 0.06,
    "IE": 0.03, "PT": 0.03, "BE": 0.02, "AT": 0.02, "SE": 0.02, "RO": 0.01, "US": 0.01,
}  # fmt: skip

CURRENCY: dict[str, str] = {
    "GB": "GBP", "DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR", "PL": "PLN",
    "IE": "EUR", "PT": "EUR", "BE": "EUR", "AT": "EUR", "SE": "SEK", "RO": "RON", "US": "USD",
}  # fmt: skip

COUNTRIES: tuple[str, ...] = tuple(dict.fromkeys(c.country for c in CITIES))


def cities_of(country: str) -> list[int]:
    return [i for i, c in enumerate(CITIES) if c.country == country]


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine).

    >>> round(distance_km(51.5074, -0.1278, 48.8566, 2.3522))
    344
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


class Network(NamedTuple):
    """An autonomous system with an address block and a place its addresses geolocate to."""

    asn: int
    ip_type: str  # residential | mobile | hosting | vpn | tor
    country: str
    city: int  # index into CITIES where a city-level lookup puts its addresses
    v4_base: int  # first address of its /12
    v6_prefix: str  # "2001:db8:xxxx"
    index: int

    def v4(self, k: int) -> str:
        """The k-th host of the block (k taken modulo ~1M; never .0 or .255)."""
        k %= 1_040_000
        x = self.v4_base + 256 + (k // 254) * 256 + 1 + k % 254
        return f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}"

    def v6(self, k: int) -> str:
        return f"{self.v6_prefix}:{(k >> 16) & 0xFFFF:x}:{k & 0xFFFF:x}::{(k * 2654435761) & 0xFFFF:x}"


_FIRST_OCTETS = (31, 37, 46, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92,
                 93, 94, 95, 109, 151, 176, 178, 185, 188, 193, 194, 195, 212, 213, 217)  # fmt: skip


class _Allocator:
    def __init__(self) -> None:
        self.networks: list[Network] = []

    def add(self, asn: int, ip_type: str, country: str, city: int) -> Network:
        i = len(self.networks)
        octet = _FIRST_OCTETS[i // 16]
        base = (octet << 24) | ((i % 16) * 16 << 16)
        net = Network(asn, ip_type, country, city, base, f"2001:db8:{0x100 + i:x}", i)
        self.networks.append(net)
        return net


def _largest_city(country: str) -> int:
    return max(cities_of(country), key=lambda i: CITIES[i].weight)


def _build_networks():
    alloc = _Allocator()
    residential: dict[str, list[Network]] = {}
    mobile: dict[str, list[Network]] = {}
    for ci, country in enumerate(COUNTRIES):
        big = _largest_city(country)
        # ASNs: deterministic, plausible-looking, distinct per role
        residential[country] = [alloc.add(5000 + 211 * ci + 7 * k, "residential", country, big) for k in range(2)]
        mobile[country] = [alloc.add(20000 + 173 * ci + 11 * k, "mobile", country, big) for k in range(2)]
    hosting = [
        alloc.add(asn, "hosting", cc, _largest_city(cc))
        for asn, cc in ((14061, "US"), (16509, "US"), (24940, "DE"), (63949, "NL"), (20473, "GB"),
                        (9009, "RO"), (16276, "FR"), (45102, "SG"), (62240, "NL"))
    ]  # fmt: skip
    vpn = [
        alloc.add(asn, "vpn", cc, _largest_city(cc))
        for asn, cc in ((212238, "NL"), (212238, "GB"), (212238, "US"), (209854, "SE"),
                        (209854, "DE"), (60068, "CH"), (60068, "ES"), (60068, "FR"))
    ]  # fmt: skip
    tor = [alloc.add(asn, "tor", cc, _largest_city(cc)) for asn, cc in ((24940, "DE"), (60729, "NL"), (53667, "US"))]
    # office / campus lines: business ISPs geolocate like residential ones
    business = {c: alloc.add(30000 + 97 * ci, "residential", c, _largest_city(c)) for ci, c in enumerate(HOME_COUNTRY_WEIGHT)}
    return alloc.networks, residential, mobile, hosting, vpn, tor, business


NETWORKS, RESIDENTIAL, MOBILE, HOSTING, VPN, TOR, BUSINESS = _build_networks()
