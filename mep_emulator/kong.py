"""
Kong 2.0.4's rate-limiting plugin as EdgeGallery's mepauth configures it in front of
mepserver and mepauth (github EdgeGallery/mep 971f2d0, mepauth/apigw.go and
mepauth/util/const.go: C{MepserverRateConf} C{{"minute": 1000, "policy": "local",
"hide_client_headers": true}} on the mepserver service, C{MepauthRateConf} the same with
100 on the mepauth service), following the Kong stand-in of the interop kit
(interop/edgegallery/gateway.py, C{rate_limiting_access}), which follows Kong's source:

- fixed calendar windows: a minute is C{floor(now / 60)} on the clock, not a sliding one;
- C{limit_by} consumer: every app's token maps to one consumer (mepauth's), so the mepserver
  routes' limit is shared by all apps; the token route has no consumer and falls back to the
  client address;
- a request over the limit is answered 429 C{{"message": "API rate limit exceeded"}} and is
  not counted (the counter is incremented only for a request that passes); the jwt plugin
  runs before it, so a request whose token Kong refuses is not counted either;
- with C{hide_client_headers} Kong computes no reset, so the 429 has no Retry-After (nor any
  X-RateLimit header); gateway.py's C{--retry-after always} adds it anyway.
"""

from __future__ import annotations

from attrs import define, field

#: Kong's answer over a limit (lua-cjson, compact).
RATE_LIMITED = b'{"message":"API rate limit exceeded"}'
#: The one Kong consumer all apps' tokens map to (mepauth creates it; its key is mepauth's).
CONSUMER = "mepauth.jwt"
WINDOW = 60


@define
class MinuteLimit:
    """One rate-limiting plugin with a per-minute limit (0: none), counted per identity."""

    limit: int = 0
    _counts: dict[tuple[str, int], int] = field(factory=dict)

    def admit(self, identity: str, now: float) -> int | None:
        """
        Count a request of C{identity} at C{now} and answer None, or, over the limit, answer
        the seconds until its window ends (Kong's reset) without counting it.
        """
        if self.limit <= 0:
            return None
        minute = int(now // WINDOW)
        key = (identity, minute)
        used = self._counts.get(key, 0)
        if used >= self.limit:
            return max(1, WINDOW - (int(now) - minute * WINDOW))
        if used == 0:  # a new window: forget the ones that are over
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= minute}
        self._counts[key] = used + 1
        return None
