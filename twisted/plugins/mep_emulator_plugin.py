"""twistd plugin drop-in: `twistd mep-emulator`."""

from twisted.application.service import ServiceMaker

mep_emulator = ServiceMaker(
    "mep-emulator",
    "mep_emulator.tap",
    "A faithful, fault-injectable EdgeGallery MEP",
    "mep-emulator",
)
