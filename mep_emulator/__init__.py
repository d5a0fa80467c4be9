"""A faithful, fault-injectable EdgeGallery MEP (mepauth + Kong + mepserver Mp1)."""
