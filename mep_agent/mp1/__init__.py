"""
The wire client to the MEP (the bottom layer): HTTP through treq, TLS, the AK/SK
signature, links, the two dialects, and MepClient, which checks every answer before it is
believed. It knows nothing of configuration files, services or the web API.
"""
