"""The mycelium simulator does what the real v0.7.10 daemon did where it was measured (../shared/specs/README.md,
"mycelium v0.7.10 as measured"), row by row, and the client copes with the daemon as it is: it never makes the
daemon wait on its lock, never asks it about an IPv4 address, and reads its peers' endpoints."""

import base64
import re
import threading

import httpx
import pytest

from sal.network import endpoint_text
from sal.network.drivers.mycelium import MyceliumClient
from tests.support.waiting import wait_until


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def nodes(mycelium):
    """start(n) → n clients of simulated nodes, not yet peered."""
    clients: list[MyceliumClient] = []

    def start(count: int) -> list[tuple[MyceliumClient, str]]:
        started = [mycelium() for _ in range(count)]
        clients.extend(MyceliumClient(node.url) for node in started)
        return [(client, node.endpoint) for client, node in zip(clients[-count:], started)]

    yield start
    for client in clients:
        client.close()


def test_peers_are_listed_as_the_daemon_lists_them(nodes):
    (a, _), (b, b_endpoint) = nodes(2)
    a.add_peer(b_endpoint)
    (static,), (inbound,) = a.peers(), b.peers()
    assert static["endpoint"] == {"proto": "tcp", "addr": {"socket": b_endpoint.removeprefix("tcp://")}}
    assert {"discovered", "lastConnected"} <= set(static) and static["type"] == "static"
    assert inbound["type"] == "inbound" and inbound["endpoint"]["addr"]["socket"].startswith("127.0.0.1:")
    a.add_peer("tls://127.0.0.1:1")  # taken, and kept trying
    assert {endpoint_text(p): p["connectionState"] for p in a.peers()}["tls://127.0.0.1:1"] == "connecting"


def test_peers_dial_the_listen_port_not_the_api(nodes):
    (a, _), (b, _) = nodes(2)
    a.add_peer("tcp://" + str(b.http.base_url).removeprefix("http://").rstrip("/"))
    assert [p["connectionState"] for p in a.peers()] == ["connecting"]
    assert b.peers() == []


def test_a_waiting_receive_holds_the_daemon_but_the_clients_does_not(mycelium):
    daemon = mycelium()
    a = MyceliumClient(daemon.url)
    waiting = threading.Thread(target=lambda: a.http.get("/api/v1/messages", params={"timeout": 1}))
    waiting.start()
    wait_until(daemon.node.lock.locked, 5, "the receive to wait")
    a.info()
    assert not daemon.node.lock.locked()  # answered only once the wait had ended
    waiting.join()

    polling = threading.Thread(target=lambda: a.receive(timeout=1.5))
    polling.start()
    a.info()  # answered while the client's receive still waits: it asks with timeout=0
    assert polling.is_alive() and not daemon.node.lock.locked()
    polling.join()
    a.close()


def test_messages_without_a_route_are_taken_and_queued(nodes):
    (a, _), = nodes(1)
    for destination in ({"ip": "400::1"}, {"ip": "10.0.0.1"}, {"pk": a.info()["nodePubkey"]}):
        answer = a.http.post("/api/v1/messages", json={"dst": destination, "payload": b64(b"x")})
        assert answer.status_code == 201, destination
        status = a.http.get(f"/api/v1/messages/status/{answer.json()['id']}").json()
        assert status["state"] == "pending" and status["msgLen"] == 1
    assert a.receive(timeout=0.5) is None  # to itself: never delivered


def test_a_message_crosses_a_node_in_between_and_the_sender_learns_the_route(nodes):
    (a, _), (b, b_endpoint), (c, _) = nodes(3)
    a.add_peer(b_endpoint)
    c.add_peer(b_endpoint)
    c_info = c.info()
    assert a.public_key(c_info["nodeIp"]) is None  # unknown before anything went there
    a.send(c_info["nodePubkey"], b"through b", topic=b"t")
    message = c.receive(topic=b"t", timeout=5)
    assert (message.payload, message.src_pk) == (b"through b", a.info()["nodePubkey"])
    assert a.public_key(c_info["nodeIp"]) == c_info["nodePubkey"]
    routes = {route["subnet"]: route for route in a.selected_routes()}
    assert routes[c_info["nodeSubnet"]]["metric"] > 0 and routes[b.info()["nodeSubnet"]]["metric"] == 0
    for route in routes.values():
        assert "seqno" in route and re.fullmatch(r"TCP \S+:\d+ <-> \S+:\d+", route["nextHop"])


def test_a_second_path_is_a_fallback_route(nodes):
    (a, _), (b, b_endpoint), (c, c_endpoint), (d, d_endpoint) = nodes(4)
    a.add_peer(b_endpoint)
    a.add_peer(d_endpoint)
    b.add_peer(c_endpoint)
    d.add_peer(c_endpoint)
    a.send(c.info()["nodePubkey"], b"x")
    assert c.receive(timeout=5).payload == b"x"
    assert [route["subnet"] for route in a.fallback_routes()] == [c.info()["nodeSubnet"]]


def test_replies_drop_their_topic_and_an_unknown_message_takes_a_reply(nodes):
    (a, _), (b, b_endpoint) = nodes(2)
    a.add_peer(b_endpoint)
    a_key = a.info()["nodePubkey"]
    assert b.http.post("/api/v1/messages/reply/0123456789abcdef", json={"dst": {"pk": a_key}, "payload": b64(b"r")}).status_code == 204
    assert a.http.post("/api/v1/messages", params={"reply_timeout": 0},
                       json={"dst": {"pk": b.info()["nodePubkey"]}, "payload": b64(b"q")}).status_code == 408

    def answer():
        question = b.receive(timeout=5)
        b.http.post(f"/api/v1/messages/reply/{question.id}", json={"dst": {"pk": a_key}, "payload": b64(b"A"), "topic": b64(b"t")})

    threading.Thread(target=answer).start()
    reply = a.send(b.info()["nodePubkey"], b"Q", reply_timeout=5)
    assert (reply.payload, reply.topic) == (b"A", None)


def test_topics_and_bodies_are_bounded_and_an_empty_topic_is_none(nodes):
    (a, _), (b, b_endpoint) = nodes(2)
    a.add_peer(b_endpoint)
    to_b = {"pk": b.info()["nodePubkey"]}
    assert a.http.post("/api/v1/messages", json={"dst": to_b, "payload": b64(b"x"), "topic": b64(b"t" * 256)}).status_code == 400
    too_big = a.http.post("/api/v1/messages", json={"dst": to_b, "payload": b64(b"x" * 1_600_000)})
    assert (too_big.status_code, "length limit exceeded" in too_big.text) == (413, True)
    assert a.http.post("/api/v1/messages", json={"dst": to_b, "payload": b64(b"e"), "topic": ""}).status_code == 201
    assert b.receive(timeout=5).topic is None


def test_errors_are_plain_text_with_the_daemons_statuses(nodes):
    (a, _), = nodes(1)
    key = a.info()["nodePubkey"]
    for body in ({"payload": b64(b"x")}, {"dst": {"pk": key}, "payload": "not base64!"}, {"dst": {"pk": "k"}, "payload": ""}):
        answer = a.http.post("/api/v1/messages", json=body)
        assert (answer.status_code, answer.headers["content-type"].split(";")[0]) == (422, "text/plain"), body
    assert a.http.post("/api/v1/messages", content=b'{"dst": {"pk": "k"}}').status_code == 415
    assert a.http.get("/api/v1/messages", params={"timeout": "soon"}).status_code == 400
    unknown = a.http.get("/api/v1/nothing")
    assert (unknown.status_code, unknown.content) == (404, b"")
    assert a.http.get("/api/v1/admin/routes/queried").json() == []
    assert set(a.http.get("/api/v1/admin/stats/packets").json()) == {"bySource", "byDestination"}


def test_an_ipv4_pubkey_lookup_drops_the_connection_and_the_client_never_asks_one(nodes):
    (a, _), = nodes(1)
    with pytest.raises(httpx.TransportError):
        a.http.get("/api/v1/pubkey/10.0.0.1")
    assert a.info()["nodeIp"]  # the daemon is still there
