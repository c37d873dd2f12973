"""Someone acting on an account: the holder in a scripted situation, or an attacker.

An :class:`Actor` knows its device, address and session and emits events through the world;
when it is given an incident, every event it emits is recorded there (an attacker's events are
exactly the incident's ``event_ids``).
"""

from __future__ import annotations

import random

from simulator.population import Device, Persona
from simulator.routine import gps_fields
from simulator.timeline import DEVICE, LOCATION, TRANSACTION, Incident, World


class Actor:
    def __init__(self, world: World, p: Persona, device: Device | None, ip: str | None, geo: dict | None,
                 incident: Incident | None = None, session_id: str | None = None) -> None:  # fmt: skip
        self.world = world
        self.p = p
        self.device = device
        self.ip = ip
        self.geo = geo
        self.incident = incident
        self.sid = session_id
        self.channel = "web" if device is not None and device.kind == "desktop" else "app"

    def move(self, ip: str, geo: dict) -> None:
        self.ip, self.geo = ip, geo

    def _base(self, with_session: bool = True) -> dict:
        f: dict = {}
        if self.device is not None:
            f["device_id"] = self.device.device_id
        if with_session and self.sid is not None:
            f["session_id"] = self.sid
        if self.ip is not None:
            f["ip"] = self.ip
        return f

    def device_event(self, ts: int, kind: str, with_fields: bool = False, **extra) -> int:
        f = self._base()
        if with_fields and self.device is not None:
            f.update(self.device.fields)
        f.update(extra)
        self.world.emit(self.p, DEVICE, ts, kind, f, self.incident)
        return ts

    def login(self, ts: int, new_session: bool = True) -> int:
        if new_session:
            self.sid = self.p.new_session()
        return self.device_event(ts, "login_success", with_fields=True)

    def fail(self, ts: int, **extra) -> int:
        f = self._base(with_session=False)
        if self.device is not None:
            f.update(self.device.fields)
        f.update(extra)
        self.world.emit(self.p, DEVICE, ts, "login_failure", f, self.incident)
        return ts

    def ipgeo(self, ts: int) -> int:
        if self.geo is None or self.ip is None:
            return ts
        f = dict(self.geo)
        f["ip"] = self.ip
        self.world.emit(self.p, LOCATION, ts, "ip_geo", f, self.incident)
        return ts

    def gps(self, ts: int, lat: float, lon: float, rnd: random.Random) -> int:
        f = gps_fields(lat, lon, rnd.random(), rnd.random(), rnd.random())
        if self.device is not None:
            f["device_id"] = self.device.device_id
        self.world.emit(self.p, LOCATION, ts, "gps_fix", f, self.incident)
        return ts

    def money(self, ts: int, kind: str, amount: float | None = None, counterparty: str | None = None,
              drain: float | None = None, **extra) -> int:  # fmt: skip
        """A transaction; ``drain`` = share of the balance at that moment (resolved when written)."""
        channel = extra.pop("channel", self.channel)
        f = {} if channel in ("api", "pos") else self._base()  # back-office and card-present: no device
        if drain is not None:
            f["amount"] = 0.0
            f["_drain"] = drain
        elif amount is not None:
            f["amount"] = round(float(amount), 2)
        if kind in ("payment", "transfer_out", "withdrawal", "loan_draw", "loan_repayment"):
            f["currency"] = self.p.currency
        if counterparty is not None:
            f["counterparty_id"] = counterparty
        f["channel"] = channel
        f.update(extra)
        self.world.emit(self.p, TRANSACTION, ts, kind, f, self.incident)
        return ts


__all__ = ["Actor"]
