"""Database URLs as operators write them: percent-encoding must survive the migrations."""

from __future__ import annotations

from sqlalchemy import make_url

from tests.service.helpers import controller, store_sweep


def test_a_percent_encoded_database_url_migrates_and_serves(database_url, tmp_path):
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        # A password with URL-special characters (trust authentication accepts any password).
        url = url.set(password="50%off@home:/x")
    else:
        folder = tmp_path / "100% sure"
        folder.mkdir()
        url = url.set(database=str(folder / "ktsweep.db"))
    rendered = url.render_as_string(hide_password=False)
    assert "%" in rendered

    with controller(rendered, tmp_path) as api:
        sweep = store_sweep(api, objectives=[0.5, 0.75])
        response = api.get(f"/api/v1/sweeps/{sweep.id}/trials", params={"order": "metric"})
        assert response.status_code == 200, response.text
        assert [t["objective"] for t in response.json()["items"]] == [0.75, 0.5]
