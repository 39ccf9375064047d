"""JSON files of a checkpoint folder, read with errors that name the file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from .._core import PyllamaError


def read_json(path: Path) -> Any:
    """The parsed file; FileNotFoundError if missing, PyllamaError if not JSON."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PyllamaError(f"{path}: not valid JSON: {exc}") from None


def read_json_object(path: Path) -> Dict[str, Any]:
    value = read_json(path)
    if not isinstance(value, dict):
        raise PyllamaError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_optional_object(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object in `path`, or None if there is no such file."""
    return read_json_object(path) if path.is_file() else None
