"""Item 5: a small YAML body whose aliases expand to millions of nodes is refused quickly, and
the server keeps answering other requests meanwhile."""

from __future__ import annotations

import threading

import httpx

from tests.security.conftest import AUTH

YAML = {**AUTH, "Content-Type": "application/yaml"}


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The 'billion laughs': each level lists the previous one `width` times."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_and_healthz_answers_meanwhile(server):
    bomb = alias_bomb()
    assert len(bomb) < 600  # the attack is a few hundred bytes
    answer: dict[str, httpx.Response | Exception] = {}

    def submit():
        try:
            answer["bomb"] = httpx.post(
                f"{server.url}/api/v1/sweeps", content=bomb, headers=YAML, timeout=60
            )
        except Exception as exc:  # reported by the assertion below
            answer["bomb"] = exc

    attacker = threading.Thread(target=submit)
    attacker.start()
    try:
        for _ in range(3):
            health = httpx.get(f"{server.url}/healthz", timeout=5)
            assert health.status_code == 200
    finally:
        attacker.join(timeout=60)
    response = answer.get("bomb")
    assert isinstance(response, httpx.Response), f"the bomb got no answer: {response!r}"
    assert response.status_code == 422, response.text[:500]
    assert "alias" in response.text
