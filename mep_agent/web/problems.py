"""
L{ApiProblem}: an answer the application API gives instead of a result, mapped to JSON
in one place (jsonweb); never carries a secret.
"""

from __future__ import annotations

from typing import Any


class ApiProblem(Exception):
    """
    An application API answer other than success: C{status}, a message and JSON fields.
    Raised anywhere below a route and turned into a JSON body by C{handle_errors}.
    """

    #: Response headers the answer carries (e.g. WWW-Authenticate with a 401).
    headers: dict[str, str] = {}

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.fields = fields
