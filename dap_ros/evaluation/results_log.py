"""Per-image results streamed to disk (JSON lines), so that a killed evaluation resumes.

The first line holds the run's settings; each further line one finished image, written with one
``write`` and flushed to the disk before the next image starts. A kill can tear only the last line:
reopening drops it (the file is cut back to the last complete line) and that image runs again.
A log written with other settings (another dataset, split file, protocol or model) is refused,
never mixed in.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dap_ros.errors import ConfigError

SCHEMA = "dap_ros.eval_dataset.images"
VERSION = 1


class ResultsLog:
    """``images.jsonl`` of a report folder: :attr:`done` (index -> record) and :meth:`append`."""

    def __init__(self, path: Path, settings: dict[str, Any], restart: bool = False) -> None:
        self.path = path
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file
        self.done: dict[int, dict[str, Any]] = {}
        if path.exists() and not restart:
            self._resume()
        else:
            self._start()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run, closed by close()

    def _start(self) -> None:
        header = json.dumps({"schema": SCHEMA, "version": VERSION, "settings": self.settings}, allow_nan=False)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(header + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def _resume(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
            ok = header.get("schema") == SCHEMA and header.get("version") == VERSION
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise ConfigError(f"{self.path} is not a dap-ros eval-dataset results file; use another --report-dir "
                              "or --restart to replace it")
        if header["settings"] != self.settings:
            differ = sorted(k for k in set(header["settings"]) | set(self.settings)
                            if header["settings"].get(k) != self.settings.get(k))
            raise ConfigError(f"{self.path} holds results of a run with other settings ({', '.join(differ)}); "
                              "use another --report-dir, or --restart to discard them")
        good = len(lines[0]) + 1
        for line in lines[1:]:
            try:
                record = json.loads(line)
                index = int(record["index"])
            except (ValueError, KeyError, TypeError):
                break  # a torn last line (the run was killed while writing it) or the end
            self.done[index] = record
            good += len(line) + 1
        if good < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done[int(record["index"])] = record

    def close(self) -> None:
        self._file.close()
