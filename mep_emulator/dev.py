"""
The emulator's development credentials: the one place they are written. The emulator is
never a real MEP; these keys are published (README) and only ever valid against it.
"""

from __future__ import annotations

from mep_emulator.auth import App

#: The application the emulator knows by default (the README's sample keys).
DEV_APP = App(
    "QVUJMSUMgS0VZLS0tLS0",
    "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc",
    "891c2bba-f1f2-40bd-a97e-9bebbafcc964",
)
#: A second application, for tests of one app's token on another's paths.
OTHER_APP = App(
    "T1RIRVJBUFBLRVkwMDAx",
    "b3RoZXItYXBwLXNlY3JldC1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw",
    "0d7b4b8e-3f7e-4a59-9d1b-2f4c8a6e5b10",
)
#: The OAuth 2.0 client of the ETSI face (client credentials), bound to DEV_APP.
DEV_CLIENT_ID = "mep-agent-dev"
DEV_CLIENT_SECRET = "dev-client-secret-not-for-production"
