"""The console's batches: each one's progress at a glance, and its entries with their calls."""

from batch_support import batch_body
from console_support import AUTH


def post_batch(client, auth_headers, numbers) -> str:
    """Store a batch through the API; return its id."""
    body = batch_body(numbers, window={"start": "00:00", "end": "23:59"})
    body["name"] = "night shift"
    response = client.post("/driver_data/call-batches", json=body, headers=auth_headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["batch_id"]


def test_batches_page_lists_each_batch_with_its_progress(client, conn, auth_headers):
    batch_id = post_batch(client, auth_headers, ["+14155550100", "+14155550101", "+14155550102"])
    for number, state in (("+14155550100", "completed"), ("+14155550101", "suppressed")):
        conn.execute(
            "UPDATE call_batch_entries SET state = %s WHERE phone_number = %s", (state, number)
        )

    page = client.get("/ops/batches", headers=AUTH)

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'href="/ops/batches/{batch_id}"' in html and "night shift" in html
    # Completed and suppressed are both done; the queued one is not.
    assert '<progress max="3" value="2">' in html and "2/3" in html
    assert 'aria-current="page">Batches</a>' in html


def test_batch_page_shows_its_counts_and_entries_with_masked_numbers(client, auth_headers):
    batch_id = post_batch(client, auth_headers, ["+14155550100"])

    page = client.get(f"/ops/batches/{batch_id}", headers=AUTH)

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "0 of 1 drivers done" in html
    assert "+14155550100" not in html  # numbers are masked, as everywhere in the console
    fragment = client.get(f"/ops/batches/{batch_id}?fragment=1", headers=AUTH)
    assert "<html" not in fragment.get_data(as_text=True)  # the live refresh swaps this in


def test_unknown_batch_page_is_404(client):
    assert client.get("/ops/batches/batch_nope", headers=AUTH).status_code == 404


def test_batches_pages_need_credentials(client):
    assert client.get("/ops/batches").status_code == 401
