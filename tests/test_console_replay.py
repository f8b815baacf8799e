"""The call page's replay button: a refused delivery replayed by the replay command's own code."""

import base64

import pytest
from console_support import answer_late
from credentials import API_TOKEN
from webhook_signing import TRANSCRIPTION, deliveries, fixture, lines, make_call, post_signed

AUTH = {"Authorization": "Basic " + base64.b64encode(f"ops:{API_TOKEN}".encode()).decode()}
SAME_ORIGIN = {**AUTH, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def early_line(client, conn):
    """A line refused because its call had no conversation_id yet, which it has now."""
    call = make_call(conn, conversation_id=None)
    refused = post_signed(client, TRANSCRIPTION, fixture("transcription_line.json", call.call_sid))
    assert refused.status_code == 400
    answer_late(conn, call)
    return call, refused.get_json()["details"]["delivery_id"]


def press_replay(client, delivery_id, call_sid, headers=SAME_ORIGIN):
    return client.post(
        f"/ops/deliveries/{delivery_id}/replay", data={"call_sid": call_sid}, headers=headers
    )


def test_call_page_shows_a_replay_button_for_a_refused_delivery(client, early_line):
    call, delivery_id = early_line

    page = client.get(f"/ops/calls/{call.call_sid}", headers=AUTH).get_data(as_text=True)

    assert f'action="/ops/deliveries/{delivery_id}/replay"' in page
    assert '<button type="submit">replay</button>' in page


def test_call_page_offers_no_replay_for_a_delivery_kept_cut_short(client, conn, early_line):
    # An oversized body is kept as a prefix: ops replay turns it down, so no button offers it.
    call, delivery_id = early_line
    conn.execute(
        "UPDATE webhook_deliveries SET body_truncated = true WHERE id = %s", (delivery_id,)
    )

    page = client.get(f"/ops/calls/{call.call_sid}", headers=AUTH).get_data(as_text=True)

    assert f'action="/ops/deliveries/{delivery_id}/replay"' not in page


def test_replay_button_replays_a_refused_delivery_once(client, conn, early_line):
    call, delivery_id = early_line

    first = press_replay(client, delivery_id, call.call_sid)
    again = press_replay(client, delivery_id, call.call_sid)

    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == f"/ops/calls/{call.call_sid}#delivery-{delivery_id}"
    assert len(lines(conn, "conv_replayed")) == 1
    [delivery] = deliveries(conn)
    assert (delivery["replay_outcome"], delivery["replay_count"]) == ("accepted", 1)
    page = client.get(f"/ops/calls/{call.call_sid}", headers=AUTH).get_data(as_text=True)
    assert "1\u00d7 → accepted" in page  # the replay column: once, accepted
    assert '<button type="submit">replay</button>' not in page  # settled: no button any more


@pytest.mark.parametrize(
    "forged",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://elsewhere.example"},
    ],
)
def test_replay_posted_from_another_site_is_403_and_replays_nothing(
    client, conn, early_line, forged
):
    call, delivery_id = early_line

    response = press_replay(client, delivery_id, call.call_sid, headers={**AUTH, **forged})

    assert response.status_code == 403
    assert deliveries(conn)[0]["replay_count"] == 0


def test_replay_without_signing_in_is_401_and_replays_nothing(client, conn, early_line):
    call, delivery_id = early_line

    response = press_replay(client, delivery_id, call.call_sid, headers={})

    assert response.status_code == 401
    assert deliveries(conn)[0]["replay_count"] == 0


@pytest.mark.parametrize("delivery_id", [999, 2**63])
def test_replay_of_an_unknown_delivery_is_404(client, early_line, delivery_id):
    assert press_replay(client, delivery_id, "").status_code == 404
