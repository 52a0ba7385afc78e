"""Generated keys: created once, complete, shared by every process that starts at the same moment."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from appconnect.security.keys import load_keys
from appconnect.settings import Settings


def _load(path: str, queue: multiprocessing.Queue[str]) -> None:
    queue.put(load_keys(Settings(key_file=Path(path))).jwt_secret)


def test_racing_processes_agree_on_one_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    queue: multiprocessing.Queue[str] = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=_load, args=(str(path), queue)) for _ in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    secrets = {queue.get(timeout=5) for _ in processes}
    assert len(secrets) == 1
    assert json.loads(path.read_text())["jwt_secret"] in secrets
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_configured_keys_win_over_the_file(tmp_path: Path) -> None:
    settings = Settings(
        key_file=tmp_path / "keys.json",
        jwt_secret="j" * 40,
        hash_key="h" * 20,
        encryption_keys="ZmFrZS1rZXktZmFrZS1rZXktZmFrZS1rZXktZmFrZTE=",
    )
    keys = load_keys(settings)
    assert keys.jwt_secret == "j" * 40 and keys.hash_key == "h" * 20
    assert not (tmp_path / "keys.json").exists()
